package protocol

import (
	"fmt"
	"strings"
)

// CanonicalGPUUUID returns the canonical form of a GPU UUID, "GPU-"
// followed by the 8-4-4-4-12 lower-case hex form NVML prints. Surrounding
// white space and the case of the prefix and digits are not part of a
// GPU's identity: " gpu-ABC…" and "GPU-abc…" are one GPU, and the
// authority keys everything by the canonical form. Any other shape is an
// error.
func CanonicalGPUUUID(s string) (string, error) {
	return canonicalUUID(s, "GPU-")
}

// CanonicalMIGUUID returns the canonical form of a MIG instance UUID:
// "MIG-" and a lower-case 8-4-4-4-12 UUID (the form of R470 and later
// drivers). The older form "MIG-GPU-<uuid>/<gi>/<ci>" is accepted as given,
// with its GPU UUID part lower-cased.
func CanonicalMIGUUID(s string) (string, error) {
	t := strings.TrimSpace(s)
	if len(t) > 8 && strings.EqualFold(t[:8], "MIG-GPU-") {
		i := strings.IndexByte(t, '/')
		if i < 0 {
			return "", fmt.Errorf("MIG UUID %q: %w (want MIG-GPU-<uuid>/<gi>/<ci>)", s, ErrNotCanonical)
		}
		g, err := canonicalUUID(t[4:i], "GPU-")
		if err != nil {
			return "", fmt.Errorf("MIG UUID %q: %w", s, err)
		}
		var gi, ci int
		if n, err := fmt.Sscanf(t[i:], "/%d/%d", &gi, &ci); err != nil || n != 2 || fmt.Sprintf("/%d/%d", gi, ci) != t[i:] {
			return "", fmt.Errorf("MIG UUID %q: %w (want MIG-GPU-<uuid>/<gi>/<ci>)", s, ErrNotCanonical)
		}
		return "MIG-" + g + t[i:], nil
	}
	return canonicalUUID(s, "MIG-")
}

func canonicalUUID(s, prefix string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	p := strings.ToLower(prefix)
	if !strings.HasPrefix(t, p) {
		return "", fmt.Errorf("%q: %w (want %s<uuid>)", s, ErrNotCanonical, prefix)
	}
	u := t[len(p):]
	if len(u) != 36 {
		return "", fmt.Errorf("%q: %w (want %s and 8-4-4-4-12 hex digits)", s, ErrNotCanonical, prefix)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", fmt.Errorf("%q: %w (want %s and 8-4-4-4-12 hex digits)", s, ErrNotCanonical, prefix)
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%q: %w (want %s and 8-4-4-4-12 hex digits)", s, ErrNotCanonical, prefix)
		}
	}
	return prefix + u, nil
}
