package protocol

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Signed reads. A node reads what the authority holds of it (its head, its
// usage) with a request signed by one of its registered keys, so that no
// one else can: the Authorization header is
//
//	GPUMeter-Ed25519 key_id="ed25519:…", ts="2026-12-03T08:00:00.000Z", sig="<base64>"
//
// where sig is the Ed25519 signature, by that key, of ReadMessage(method,
// request URI, ts). The authority accepts ts within ReadSkew of its own
// clock and answers with the key's node's data only. A signed read is
// read-only, so replaying one within the skew reveals nothing new.
const (
	ReadScheme = "GPUMeter-Ed25519"
	ReadSkew   = 5 * time.Minute
)

// ReadMessage is what a signed read signs: a domain tag (so a read
// signature is never a batch signature), the method, the request URI
// (path and query, as sent) and the timestamp.
func ReadMessage(method, requestURI, ts string) []byte {
	return []byte("gpumeter-read-v1\n" + method + "\n" + requestURI + "\n" + ts)
}

// SignRead returns the Authorization header value for a read.
func SignRead(key ed25519.PrivateKey, keyID, method, requestURI string, now time.Time) string {
	ts := now.UTC().Format("2006-01-02T15:04:05.000Z")
	sig := ed25519.Sign(key, ReadMessage(method, requestURI, ts))
	return fmt.Sprintf(`%s key_id=%q, ts=%q, sig=%q`, ReadScheme, keyID, ts, base64.StdEncoding.EncodeToString(sig))
}

// ReadAuth is a parsed signed-read header.
type ReadAuth struct {
	KeyID string
	TS    string
	Time  time.Time
	Sig   []byte
}

// ParseReadAuth parses an Authorization header of ReadScheme.
func ParseReadAuth(h string) (ReadAuth, error) {
	rest, ok := strings.CutPrefix(h, ReadScheme+" ")
	if !ok {
		return ReadAuth{}, fmt.Errorf("authorization scheme is not %s", ReadScheme)
	}
	var a ReadAuth
	seen := map[string]bool{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || seen[k] {
			return ReadAuth{}, fmt.Errorf("authorization parameter %q is not key=\"value\" (or repeats)", part)
		}
		seen[k] = true
		v = v[1 : len(v)-1]
		switch k {
		case "key_id":
			a.KeyID = v
		case "ts":
			a.TS = v
		case "sig":
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return ReadAuth{}, fmt.Errorf("authorization sig is not base64: %v", err)
			}
			a.Sig = b
		default:
			return ReadAuth{}, fmt.Errorf("authorization parameter %q is unknown", k)
		}
	}
	if a.KeyID == "" || a.TS == "" || a.Sig == nil {
		return ReadAuth{}, fmt.Errorf("authorization needs key_id, ts and sig")
	}
	t, err := time.Parse(time.RFC3339Nano, a.TS)
	if err != nil {
		return ReadAuth{}, fmt.Errorf("authorization ts %q is not RFC 3339", a.TS)
	}
	a.Time = t
	return a, nil
}

// Verify checks the signature with pub for method and requestURI.
func (a ReadAuth) Verify(pub ed25519.PublicKey, method, requestURI string) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, ReadMessage(method, requestURI, a.TS), a.Sig)
}
