package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testenv"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/protocol"
)

// The red team: a dishonest provider with root on its node, its valid key
// and nothing else, against a real `voucher-authority serve` process on
// each store. Every inflated or malformed claim below was signed with the
// node's own registered key, without the agent's sealer (which refuses
// most of them before they leave the node); each must be refused with a
// problem type of its own, or held for review, and nothing of it paid.

const (
	rtProvider = "rt-cloud"
	rtNode     = "rt-node"
	rtGPU      = "GPU-7e570000-0000-4000-8000-000000000001" // whole H100
	rtMIGGPU   = "GPU-7e570000-0000-4000-8000-000000000002" // H100 in MIG mode
	rtMIG3g    = "MIG-7e570000-0000-4000-9000-000000000003"
	rtMIG4g    = "MIG-7e570000-0000-4000-9000-000000000004"
	rtModel    = "NVIDIA H100 80GB HBM3"
)

// rtNodeKey signs as the node would, with no check of what it signs.
type rtNodeKey struct {
	key  ed25519.PrivateKey
	head uint64
	hash string
}

// sign returns the envelope of recs as the node's next batch and the
// batch's hash (its successor's prev_hash, should it be stored).
func (k *rtNodeKey) sign(recs []protocol.Record, mutate func(payload []byte) []byte) ([]byte, string) {
	b := protocol.Batch{Node: rtNode, KeyID: signing.KeyID(k.key.Public().(ed25519.PublicKey)), FirstSeq: k.head + 1,
		LastSeq: k.head + uint64(len(recs)), PrevHash: k.hash, Created: time.Now().UTC().Truncate(time.Millisecond)}
	for i, r := range recs {
		r.Seq = k.head + 1 + uint64(i)
		b.Records = append(b.Records, r)
	}
	payload, err := json.Marshal(&b)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	if mutate != nil {
		payload = mutate(payload)
	}
	s, err := signing.NewSigner(k.key)
	if err != nil {
		panic(err)
	}
	es, err := dsse.NewEnvelopeSigner(s)
	if err != nil {
		panic(err)
	}
	env, err := es.SignPayload(context.Background(), protocol.PayloadType, payload)
	if err != nil {
		panic(err)
	}
	out, err := json.Marshal(env)
	if err != nil {
		panic(err)
	}
	return out, protocol.Hash(payload)
}

// rtUse is a usage record of acme on unit (a whole GPU when profile is
// "") for ms of [start, end), drawing watts (energy unknown for MIG).
func rtUse(parent, unit, profile string, num, den int, start, end time.Time, ms int64, watts int64) protocol.Record {
	r := protocol.Record{Node: rtNode, Provider: rtProvider, Kind: protocol.KindUsage, Tenant: "acme", Attribution: "cgroup",
		WindowStart: start.UTC(), WindowEnd: end.UTC(), GPUUUID: unit, ParentUUID: parent, Model: rtModel,
		MIGProfile: profile, SliceNum: num, SliceDen: den, GPUMillis: ms, UtilizationPercent: 80, EnergyMillijoules: watts * ms}
	if profile != "" {
		r.UtilizationPercent, r.EnergyMillijoules = protocol.Unknown, protocol.Unknown
	}
	r.ID = r.ComputeID()
	return r
}

func rtInventory(at time.Time, layout ...string) protocol.Record {
	inv := protocol.Inventory{WindowMillis: time.Minute.Milliseconds(), MergeWindowMillis: time.Hour.Milliseconds(), GPUs: []protocol.InventoryGPU{
		{UUID: rtGPU, Model: rtModel},
		{UUID: rtMIGGPU, Model: rtModel, MIGEnabled: true},
	}}
	for i := 0; i+1 < len(layout); i += 2 {
		inv.GPUs[1].Instances = append(inv.GPUs[1].Instances, protocol.InventoryInstance{UUID: layout[i], Profile: layout[i+1], GPUInstanceID: i})
	}
	return protocol.InventoryRecord(rtNode, rtProvider, at, inv)
}

func reID(r protocol.Record) protocol.Record { r.ID = r.ComputeID(); return r }

func TestRedTeam(t *testing.T) {
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		t.Run(driver, func(t *testing.T) { redTeam(t, driver) })
	}
}

func redTeam(t *testing.T, driver string) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "authority.db")
	if driver == store.DriverPostgres {
		db = testenv.PostgresDSN(t)
	}
	// cli runs a command; want -1 is any failure.
	cli := func(t *testing.T, want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(ctx, args, &out, &errb); code != want && (want != -1 || code == exitOK) {
			t.Fatalf("%v: exit %d, want %d: %s%s", args, code, want, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	now := time.Now().UTC()
	since := now.Truncate(time.Hour).Add(-6 * time.Hour)
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cli(t, exitOK, "node", "register", "--db", db, "--id", rtNode, "--provider", rtProvider, "--public-key", signing.EncodePublicKey(pub),
		"--model", "H100-SXM5-80GB", "--since", since.Format(time.RFC3339), "--gpu", rtGPU, "--gpu", rtMIGGPU)
	day := since.Add(-24 * time.Hour).Format(time.RFC3339)
	cli(t, exitOK, "entity", "put", "--db", db, "--id", "acme-ltd", "--name", "Acme Ltd.")
	cli(t, exitOK, "tenant", "map", "--db", db, "--provider", rtProvider, "--tenant", "acme", "--entity", "acme-ltd")
	prog := filepath.Join(dir, "program.yaml")
	if err := os.WriteFile(prog, []byte(fmt.Sprintf(`id: rt-program
issuer: Red Team City (test)
name: test vouchers
ratio_percent: 50
cap_per_entity_year_yuan: 10000000
providers: [%s]
valid_from: %s
valid_to: %s
rounding: half_up
settlement: after_settlement
`, rtProvider, since.Add(-24*time.Hour).Format(time.DateOnly), since.AddDate(1, 0, 0).Format(time.DateOnly))), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, exitOK, "program", "add", "--db", db, "--file", prog)
	// Cards by NVML name and by id: the authority stores its own id.
	cli(t, exitOK, "ratecard", "add", "--db", db, "--id", "h100", "--provider", rtProvider, "--model", rtModel,
		"--price-yuan-per-hour", "25", "--from", day)
	cli(t, exitOK, "voucher", "issue", "--db", db, "--id", "v-acme", "--program", "rt-program", "--holder", "acme-ltd",
		"--face-yuan", "100000", "--issued", day, "--expires", since.AddDate(0, 6, 0).Format(time.RFC3339))

	// Registration-time attacks, through the operator's own CLI.
	t.Run("case or white space variant of a registered UUID on another node", func(t *testing.T) {
		pub2, _, _ := ed25519.GenerateKey(rand.Reader)
		variant := " " + strings.ToUpper(rtGPU[:4]) + strings.ToUpper(rtGPU[4:]) + " "
		out := cli(t, -1, "node", "register", "--db", db, "--id", "rt-other", "--provider", "other-cloud",
			"--public-key", signing.EncodePublicKey(pub2), "--model", "H100-SXM5-80GB", "--gpu", variant)
		if !strings.Contains(out, "registered to another node") {
			t.Errorf("variant registered: %s", out)
		}
	})
	t.Run("control characters in names at registration", func(t *testing.T) {
		for _, bad := range []string{"acme\x00", "acme\u202egnp", "ac\nme"} {
			out := cli(t, -1, "tenant", "map", "--db", db, "--provider", rtProvider, "--tenant", bad, "--entity", "acme-ltd")
			if !strings.Contains(out, "tenant") {
				t.Errorf("tenant %q: %s", bad, out)
			}
		}
		cli(t, -1, "tenant", "map", "--db", db, "--provider", rtProvider, "--tenant", protocol.TenantUnattributed, "--entity", "acme-ltd")
	})

	cfg := filepath.Join(dir, "authority.yaml")
	storeCfg := fmt.Sprintf("store: {driver: sqlite, path: %q}", db)
	if driver == store.DriverPostgres {
		// The password goes in a 0600 file, as the config requires.
		bare, pwFile, _ := splitPassword(t, dir, db)
		storeCfg = fmt.Sprintf("store: {driver: postgres, dsn: %q, password_file: %q}", bare, pwFile)
	}
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\n"+storeCfg+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := startAuthority(t, cfg)
	client := &http.Client{Timeout: 60 * time.Second}
	defer client.CloseIdleConnections()
	// post answers the status, the problem's cause and detail (or the
	// transport error's text, with status 0).
	post := func(body []byte, _ string) (int, string, string) {
		resp, err := client.Post(proc.url+"/v1/batches", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var p struct{ Type, Detail string }
		_ = json.Unmarshal(raw, &p)
		return resp.StatusCode, strings.TrimPrefix(p.Type, protocol.TypeBase), p.Detail
	}

	conn, err := sql.Open(map[string]string{store.DriverSQLite: "sqlite", store.DriverPostgres: "pgx"}[driver], db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// paid is the subsidy granted and not held, the subsidy held for
	// review, and the records stored.
	paid := func() (subsidy, held int64, records int64) {
		t.Helper()
		if err := conn.QueryRowContext(ctx, `SELECT
			CAST(COALESCE(SUM(CASE WHEN review IN ('', 'approved') THEN subsidy_fen ELSE 0 END), 0) AS BIGINT),
			CAST(COALESCE(SUM(CASE WHEN review = 'held' THEN subsidy_fen ELSE 0 END), 0) AS BIGINT),
			(SELECT COUNT(*) FROM records) FROM charges`).Scan(&subsidy, &held, &records); err != nil {
			t.Fatal(err)
		}
		return
	}
	stored := func() int {
		var n int
		if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM records`).Scan(&n); err != nil {
			t.Error(err)
		}
		return n
	}

	// The honest start: the inventory, then a minute of real work on the
	// whole GPU and on the 3g instance.
	node := &rtNodeKey{key: key}
	w := now.Truncate(time.Minute).Add(-2 * time.Hour)
	honest := []protocol.Record{
		rtInventory(w.Add(-time.Minute), rtMIG3g, "3g.40gb", rtMIG4g, "4g.40gb"),
		rtUse(rtGPU, rtGPU, "", 1, 1, w, w.Add(time.Minute), 60000, 400),
		rtUse(rtMIGGPU, rtMIG3g, "3g.40gb", 3, 7, w, w.Add(time.Minute), 60000, 0),
	}
	env, hash := node.sign(honest, nil)
	if code, cause, detail := post(env, hash); code != http.StatusOK {
		t.Fatalf("honest batch: %d %s: %s", code, cause, detail)
	}
	node.head, node.hash = uint64(len(honest)), hash
	paidBefore, heldBefore, recordsBefore := paid()
	if paidBefore == 0 {
		t.Fatal("the honest minute was not subsidized")
	}

	w2 := w.Add(time.Minute) // the next window, free for every attack
	invented := make([]protocol.Record, 2000)
	for i := range invented {
		u := fmt.Sprintf("MIG-7e570000-0000-4000-a000-%012d", i)
		invented[i] = rtUse(rtMIGGPU, u, "1g.10gb", 1, 7, w2, w2.Add(time.Minute), 60000, 0)
	}
	overfull := func() []protocol.Record {
		// A valid reconfiguration half way through the window (4g+3g, then
		// 7g), and every instance claiming the whole window: 2 GPUs' worth.
		const mig7 = "MIG-7e570000-0000-4000-9000-000000000007"
		return []protocol.Record{
			rtInventory(w2.Add(30*time.Second), mig7, "7g.80gb"),
			rtUse(rtMIGGPU, rtMIG3g, "3g.40gb", 3, 7, w2, w2.Add(time.Minute), 60000, 0),
			rtUse(rtMIGGPU, rtMIG4g, "4g.40gb", 4, 7, w2, w2.Add(time.Minute), 60000, 0),
			rtUse(rtMIGGPU, mig7, "7g.80gb", 7, 7, w2, w2.Add(time.Minute), 60000, 0),
		}
	}
	one := func(mut func(r *protocol.Record)) []protocol.Record {
		r := rtUse(rtGPU, rtGPU, "", 1, 1, w2, w2.Add(time.Minute), 60000, 400)
		mut(&r)
		return []protocol.Record{reID(r)}
	}
	// Starts at the next minute: ends a minute or two from now, within
	// the authority's clock skew.
	cur := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	attacks := []struct {
		name   string
		recs   []protocol.Record
		mutate func([]byte) []byte
		status int
		cause  string
	}{
		{"2000 invented units under a registered GPU", invented, nil, 422, protocol.NotInLayout},
		{"an invented whole GPU", one(func(r *protocol.Record) {
			r.GPUUUID, r.ParentUUID = "GPU-7e570000-0000-4000-8000-0000000000ff", "GPU-7e570000-0000-4000-8000-0000000000ff"
		}), nil, 422, protocol.GPUNotRegistered},
		{"a layout whose MIG slices sum above 1", []protocol.Record{rtInventory(w2, rtMIG3g, "4g.40gb", rtMIG4g, "4g.40gb")}, nil, 422, protocol.InvalidInventory},
		{"MIG records whose slices sum above 1 across a reconfiguration", overfull(), nil, 422, protocol.OverGPUTime},
		{"a window before registration", one(func(r *protocol.Record) {
			r.WindowStart, r.WindowEnd = since.Add(-10*time.Minute), since.Add(-9*time.Minute)
		}), nil, 422, protocol.BeforeActive},
		{"a window longer than the metering window", one(func(r *protocol.Record) {
			r.WindowStart, r.WindowEnd, r.GPUMillis = since.Add(time.Hour), since.Add(3*time.Hour), 7_200_000
			r.EnergyMillijoules = 400 * r.GPUMillis
		}), nil, 422, protocol.WindowTooLong},
		{"a window across two metering windows", one(func(r *protocol.Record) {
			r.WindowStart, r.WindowEnd = w2.Truncate(time.Hour).Add(59*time.Minute+30*time.Second), w2.Truncate(time.Hour).Add(60*time.Minute+30*time.Second)
		}), nil, 422, protocol.WindowTooLong},
		{"a window that has not ended", one(func(r *protocol.Record) {
			r.WindowStart, r.WindowEnd = cur, cur.Add(time.Minute)
		}), nil, 425, protocol.WindowNotEnded},
		{"a model other than the registered one", one(func(r *protocol.Record) { r.Model = "NVIDIA H200" }), nil, 422, protocol.ModelMismatch},
		{"a model the authority does not know", one(func(r *protocol.Record) { r.Model = "NVIDIA B300 (made up)" }), nil, 422, protocol.ModelMismatch},
		{"an upper-case variant of the GPU's UUID", one(func(r *protocol.Record) {
			r.ParentUUID = strings.ToUpper(rtGPU)
			r.GPUUUID = r.ParentUUID
		}), nil, 422, protocol.InvalidUUID},
		{"usage with a gap reason", one(func(r *protocol.Record) { r.GapReason = protocol.GapAgentDown }), nil, 422, protocol.KindFields},
		{"idle with a tenant", one(func(r *protocol.Record) { r.Kind = protocol.KindIdle }), nil, 422, protocol.KindFields},
		{"a gap with a tenant", one(func(r *protocol.Record) { r.Kind, r.GapReason = protocol.KindGap, protocol.GapDeviceLost }), nil, 422, protocol.KindFields},
		{"a MIG slice other than its profile's", []protocol.Record{rtUse(rtMIGGPU, rtMIG3g, "3g.40gb", 7, 7, w2, w2.Add(time.Minute), 60000, 0)}, nil, 422, protocol.SliceMismatch},
		{"a slice above one", []protocol.Record{rtUse(rtMIGGPU, rtMIG3g, "3g.40gb", 8, 7, w2, w2.Add(time.Minute), 60000, 0)}, nil, 422, protocol.SliceMismatch},
		{"a whole GPU billed as a fraction", one(func(r *protocol.Record) { r.SliceNum, r.SliceDen = 0, 0 }), nil, 422, protocol.SliceMismatch},
		{"a duplicate JSON member", one(func(r *protocol.Record) {}), func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"gpu_ms":60000`), []byte(`"gpu_ms":60000,"gpu_ms":3600000`), 1)
		}, 400, protocol.DuplicateKey},
		{"an unknown member", one(func(r *protocol.Record) {}), func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"gpu_ms":60000`), []byte(`"gpu_ms":60000,"bonus_ms":3600000`), 1)
		}, 400, protocol.Malformed},
		{"a control character in a tenant", one(func(r *protocol.Record) { r.Tenant = "acme\x00" }), nil, 422, protocol.InvalidName},
		{"a bidirectional override in a tenant", one(func(r *protocol.Record) { r.Tenant = "acme\u202e" }), nil, 422, protocol.InvalidName},
		{"utilization above 100", one(func(r *protocol.Record) { r.UtilizationPercent = 250 }), nil, 422, protocol.InvalidValue},
		{"negative energy", one(func(r *protocol.Record) { r.EnergyMillijoules = -5 }), nil, 422, protocol.InvalidValue},
		{"energy above the model's maximum power", one(func(r *protocol.Record) { r.EnergyMillijoules = 60000 * 2000 }), nil, 422, protocol.InvalidValue},
		{"more GPU time than the window", one(func(r *protocol.Record) { r.GPUMillis = 3_600_000 }), nil, 422, protocol.OverWallTime},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			code, cause, detail := post(node.sign(a.recs, a.mutate))
			if code == 0 {
				t.Fatal(detail)
			}
			if code != a.status || cause != a.cause {
				t.Fatalf("answer %d %s (%s), want %d %s", code, cause, detail, a.status, a.cause)
			}
			if p, h, n := paid(); p != paidBefore || h != heldBefore || n != recordsBefore {
				t.Fatalf("after the refusal: paid %d held %d records %d, want %d %d %d", p, h, n, paidBefore, heldBefore, recordsBefore)
			}
		})
	}

	// Plausibility: stored and priced, but the subsidy held, not paid.
	t.Run("idle-looking usage is held for review", func(t *testing.T) {
		recs := []protocol.Record{
			rtUse(rtGPU, rtGPU, "", 1, 1, w2, w2.Add(time.Minute), 60000, 50), // 50 W: an H100 at rest
			func() protocol.Record {
				r := rtUse(rtGPU, rtGPU, "", 1, 1, w2.Add(time.Minute), w2.Add(2*time.Minute), 60000, 400)
				r.UtilizationPercent = 0
				return reID(r)
			}(),
		}
		env, hash := node.sign(recs, nil)
		code, cause, detail := post(env, hash)
		if code != http.StatusOK {
			t.Fatalf("answer %d %s (%s), want 200 with the subsidy held", code, cause, detail)
		}
		node.head, node.hash = node.head+uint64(len(recs)), hash
		p, h, _ := paid()
		if p != paidBefore || h <= heldBefore {
			t.Fatalf("paid %d held %d, want paid %d and more than %d held", p, h, paidBefore, heldBefore)
		}
		var queued int
		if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM reviews WHERE status = 'held'`).Scan(&queued); err != nil || queued != 2 {
			t.Fatalf("%d held reviews, %v; want 2", queued, err)
		}
	})

	t.Run("an unauthenticated read of usage", func(t *testing.T) {
		resp, err := client.Get(proc.url + "/v1/usage?from=" + since.Format(time.RFC3339) + "&to=" + now.Format(time.RFC3339))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /v1/usage without credentials: %d, want 401", resp.StatusCode)
		}
	})

	t.Run("a revocation racing an ingest", func(t *testing.T) {
		// The node sends its next minutes as fast as it can while the
		// operator revokes its key. Whatever was stored when the
		// revocation committed is all that is ever stored.
		stop := make(chan struct{})
		results := make(chan string, 1)
		go func() {
			next := w2.Add(2 * time.Minute)
			for {
				select {
				case <-stop:
					results <- "stopped"
					return
				default:
				}
				env, hash := node.sign([]protocol.Record{rtUse(rtGPU, rtGPU, "", 1, 1, next, next.Add(time.Minute), 60000, 400)}, nil)
				code, cause, detail := post(env, hash)
				if code != http.StatusOK {
					results <- cause + " " + detail
					return
				}
				node.head, node.hash = node.head+1, hash
				next = next.Add(time.Minute)
			}
		}()
		deadline := time.Now().Add(60 * time.Second)
		for stored() < 3+2+3 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // poll the database, bounded by the deadline
		}
		cli(t, exitOK, "key", "revoke", "--db", db, "--key-id", signing.KeyID(pub))
		atRevocation := stored()
		var cause string
		select {
		case cause = <-results:
		case <-time.After(60 * time.Second):
			close(stop)
			t.Fatal("the node's batches were still accepted a minute after its key was revoked")
		}
		if !strings.HasPrefix(cause, protocol.RevokedKey+" ") {
			t.Fatalf("the race ended with %q, want %s", cause, protocol.RevokedKey)
		}
		if after := stored(); after != atRevocation {
			t.Fatalf("%d records stored when the revocation committed, %d now", atRevocation, after)
		}
	})
}
