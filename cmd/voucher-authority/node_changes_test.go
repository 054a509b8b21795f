package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/testutil"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// TestNodeChangeCommands: a node flagged by a real second signer (a copy
// posting another batch 1 over HTTP) is shown by node list and node
// instances and cleared by node unfork, once; a GPU is removed from one
// node and added to another from the removal on; each change is in audit
// actions with the OS user as actor, newest first; refused input exits
// 64 naming the flag, an unknown node 1.
func TestNodeChangeCommands(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		const gpu2, gpu3 = "GPU-b111b111-0000-4000-8000-000000000002", "GPU-b111b111-0000-4000-8000-000000000003"
		key := testutil.NewKey(t)
		a := authoritytest.New(t, authoritytest.Options{Driver: driver, Nodes: []authoritytest.Node{
			{ID: "n1", Provider: testProvider, PublicKey: key.Public().(ed25519.PublicKey), GPUs: []string{testGPU, gpu2}},
			{ID: "n2", Provider: testProvider, PublicKey: testutil.NewPublicKey(t), GPUs: []string{gpu3}},
		}})
		db := dbArg(a, driver)
		base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
		deliver(t, a, key, []protocol.Record{usageRecord(base, "t1", 60000)})
		// The copy: the same key, its own batch 1 (another tenant).
		copySealer, err := ledger.NewSealer("n1", key, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		b, err := copySealer.Seal(context.Background(), 1, "", []protocol.Record{usageRecord(base, "t2", 60000)})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := a.HTTP.Client().Post(a.URL+"/v1/batches", "application/json", bytes.NewReader(b.Envelope))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Fatalf("the copy's batch: %d, want 409", resp.StatusCode)
		}

		actor := store.ActorOf(context.Background()) // the OS user running the test
		at := base.Add(2 * time.Minute).Format(time.RFC3339)
		runSteps(t, []step{
			{"node list flagged", []string{"node", "list", "--db", db}, 0, "second signer (1 instances heard from)", ""},
			{"node instances", []string{"node", "instances", "--db", db, "--node", "n1"}, 0, "node n1 is flagged", ""},
			{"node instances of n2", []string{"node", "instances", "--db", db, "--node", "n2"}, 0, "node n2 is not flagged", ""},
			{"node instances of an unknown node", []string{"node", "instances", "--db", db, "--node", "n9"}, 1, "", "not registered"},
			{"node instances without --node", []string{"node", "instances", "--db", db}, exitUsage, "", `required flag(s) "node" not set`},
			{"unfork without a reason", []string{"node", "unfork", "--db", db, "--node", "n1"}, exitUsage, "", `required flag(s) "reason" not set`},
			{"unfork with a blank reason", []string{"node", "unfork", "--db", db, "--node", "n1", "--reason", " "}, exitUsage, "", "--reason must say why"},
			{"unfork with a control character", []string{"node", "unfork", "--db", db, "--node", "n1", "--reason", "x\x1b[2J"}, exitUsage, "", "reason:"},
			{"unfork an unknown node", []string{"node", "unfork", "--db", db, "--node", "n9", "--reason", "x"}, 1, "", "not registered"},
			{"unfork", []string{"node", "unfork", "--db", db, "--node", "n1", "--reason", "clone vm-123 shut down"}, 0, "cleared the flag of node n1 by " + actor, ""},
			{"unfork an unflagged node", []string{"node", "unfork", "--db", db, "--node", "n1", "--reason", "again"}, exitUsage, "", "node is not flagged"},
			{"node instances after unfork", []string{"node", "instances", "--db", db, "--node", "n1"}, 0, "node n1 is not flagged", ""},
			{"remove-gpu bad UUID", []string{"node", "remove-gpu", "--db", db, "--node", "n1", "--gpu", "GPU-nope"}, exitUsage, "", "--gpu"},
			{"remove-gpu bad time", []string{"node", "remove-gpu", "--db", db, "--node", "n1", "--gpu", testGPU, "--at", "soon"}, exitUsage, "", "--at"},
			{"remove-gpu cutting stored usage", []string{"node", "remove-gpu", "--db", db, "--node", "n1", "--gpu", testGPU, "--at", base.Add(30 * time.Second).Format(time.RFC3339)},
				exitUsage, "", "stored until"},
			{"remove-gpu of another node's GPU", []string{"node", "remove-gpu", "--db", db, "--node", "n2", "--gpu", testGPU}, exitUsage, "", "not registered to the node"},
			{"remove-gpu of an unknown node", []string{"node", "remove-gpu", "--db", db, "--node", "n9", "--gpu", testGPU}, 1, "", "not registered"},
			{"remove-gpu", []string{"node", "remove-gpu", "--db", db, "--node", "n1", "--gpu", strings.ToLower(testGPU), "--at", at}, 0,
				"removed GPU " + testGPU + " from node n1 at " + at, ""},
			{"node list shows the retirement", []string{"node", "list", "--db", db}, 0, testGPU + " (H100-SXM5-80GB, retired ", ""},
			{"add-gpu before the removal", []string{"node", "add-gpu", "--db", db, "--id", "n2", "--gpu", testGPU + "=H100-SXM5-80GB",
				"--since", base.Add(time.Minute).Format(time.RFC3339)}, exitUsage, "", "register it from then on"},
			{"add-gpu from the removal on", []string{"node", "add-gpu", "--db", db, "--id", "n2", "--gpu", testGPU + "=H100-SXM5-80GB", "--since", at}, 0, "added 1 GPUs to node n2", ""},
			{"head of n2", []string{"head", "--db", db, "--node", "n2"}, 0, testGPU, ""},
			{"audit actions table", []string{"audit", "actions", "--db", db, "--node", "n1", "--action", "node unfork"}, 0, "clone vm-123 shut down", ""},
			{"audit actions unknown action", []string{"audit", "actions", "--db", db, "--action", "node frobnicate"}, exitUsage, "", `--action "node frobnicate"`},
			{"audit actions limit 0", []string{"audit", "actions", "--db", db, "--limit", "0"}, exitUsage, "", "--limit"},
			{"audit actions in XML", []string{"audit", "actions", "--db", db, "--format", "xml"}, exitUsage, "", "--format"},
		})

		var acts []store.OperatorAction
		if err := json.Unmarshal([]byte(output(t, "audit", "actions", "--db", db, "--format", "json")), &acts); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range acts {
			got = append(got, a.Action+" "+a.Node)
		}
		want := "node add-gpu n2, node remove-gpu n1, node unfork n1, node register n2, node register n1"
		if strings.Join(got, ", ") != want {
			t.Fatalf("audit actions, newest first: %q, want %q", strings.Join(got, ", "), want)
		}
		for _, a := range acts[:3] {
			if a.Actor != actor {
				t.Errorf("%s by %q, want the OS user %q", a.Action, a.Actor, actor)
			}
		}
		var d struct {
			Reason    string           `json:"reason"`
			Instances []store.Instance `json:"instances"`
		}
		if err := json.Unmarshal(acts[2].Details, &d); err != nil || d.Reason != "clone vm-123 shut down" ||
			len(d.Instances) != 1 || d.Instances[0].Accepted != 1 || d.Instances[0].Refused != 1 {
			t.Errorf("unfork details %s: %+v, %v; want the reason and the instance (1 accepted, 1 refused)", acts[2].Details, d, err)
		}
		if one := output(t, "audit", "actions", "--db", db, "--limit", "1", "--format", "json"); strings.Count(one, `"action"`) != 1 ||
			!strings.Contains(one, "node add-gpu") {
			t.Errorf("audit actions --limit 1:\n%s", one)
		}
		var nodes []nodeListJSON
		if err := json.Unmarshal([]byte(output(t, "node", "list", "--db", db, "--format", "json")), &nodes); err != nil ||
			len(nodes) != 2 || nodes[0].Flagged || len(nodes[0].Instances) != 1 || len(nodes[0].GPUs) != 1 || len(nodes[1].GPUs) != 2 {
			t.Errorf("node list after the changes: %+v, %v", nodes, err)
		}
	})
}
