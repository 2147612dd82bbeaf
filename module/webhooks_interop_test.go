package module_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/internal/testcaddy"
)

// verifyDelivery is the README's Go verification snippet, verbatim
// (TestREADMEWebhookSnippets checks that); hookReceiver runs every
// delivery through it.
func verifyDelivery(wh *standardwebhooks.Webhook, r *http.Request) (id string, body []byte, err error) {
	body, err = io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return "", nil, err
	}
	if err := wh.Verify(body, r.Header); err != nil { // the signature, and the timestamp within 5 minutes
		return "", nil, err
	}
	return r.Header.Get("webhook-id"), body, nil // dedupe by it: a retry or replay repeats it
}

// TestREADMEWebhookSnippets: the README's verification snippets are the
// code the tests run: interop/webhook-receiver.js whole (run by
// TestInteropStandardWebhooksNode) and verifyDelivery (run by every
// webhook test's receiver).
func TestREADMEWebhookSnippets(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(interopDir(t), "webhook-receiver.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("```js\n"+string(js)+"```\n")) {
		t.Error("README.md does not show interop/webhook-receiver.js verbatim in a js block")
	}
	src, err := os.ReadFile("webhooks_interop_test.go")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(src, []byte("func verifyDelivery("))
	end := bytes.Index(src[start:], []byte("\n}\n"))
	if start < 0 || end < 0 {
		t.Fatal("verifyDelivery not found")
	}
	if fn := src[start : start+end+3]; !bytes.Contains(readme, fn) {
		t.Errorf("README.md does not show verifyDelivery verbatim:\n%s", fn)
	}
}

// nodeReceiver runs interop/webhook-receiver.js (the README's receiver,
// verifying with the standardwebhooks npm package) on a port it picks
// (PORT=0; Node cannot share a port testcaddy.FreePort holds), and
// collects the lines it prints, across restarts.
type nodeReceiver struct {
	t    *testing.T
	dir  string
	port int // of the running process

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	lines []receiverLine
	cond  chan struct{}
}

// receiverLine is one line of webhook-receiver.js: a first delivery (Type
// set), a duplicate, or a refusal.
type receiverLine struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Subject   string `json:"subject"`
	Duplicate bool   `json:"duplicate"`
	Refused   string `json:"refused"`
	Listening int    `json:"listening"`
}

func startNodeReceiver(t *testing.T, dir, secret string) *nodeReceiver {
	rc := &nodeReceiver{t: t, dir: dir, cond: make(chan struct{})}
	rc.start(secret)
	t.Cleanup(rc.stop)
	return rc
}

// start runs the script with secret and waits until it says where it
// listens.
func (rc *nodeReceiver) start(secret string) {
	rc.t.Helper()
	cmd := exec.Command("node", "webhook-receiver.js")
	cmd.Dir = rc.dir
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secret, "PORT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		rc.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		rc.t.Fatalf("starting node webhook-receiver.js: %v", err)
	}
	done := make(chan struct{})
	listening := make(chan int, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l receiverLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				rc.t.Errorf("receiver printed %q", sc.Text())
				continue
			}
			if l.Listening != 0 {
				listening <- l.Listening
				continue
			}
			rc.mu.Lock()
			rc.lines = append(rc.lines, l)
			close(rc.cond)
			rc.cond = make(chan struct{})
			rc.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	rc.mu.Lock()
	rc.cmd, rc.done = cmd, done
	rc.mu.Unlock()
	select {
	case port := <-listening:
		rc.port = port
	case <-done:
		rc.t.Fatalf("webhook-receiver.js exited: %s", stderr.String())
	case <-time.After(20 * time.Second):
		rc.t.Fatalf("webhook-receiver.js does not listen: %s", stderr.String())
	}
}

// stop kills the script (the process this test started) and waits for it.
func (rc *nodeReceiver) stop() {
	rc.mu.Lock()
	cmd, done := rc.cmd, rc.done
	rc.cmd = nil
	rc.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// restart stops the receiver and starts it with another secret (a
// receiver switching secrets), and points webhook hook of e at it.
func (rc *nodeReceiver) restart(e *eventsEnv, hook, secret string) {
	rc.t.Helper()
	rc.stop()
	rc.start(secret)
	e.api(http.MethodPatch, "/v1/webhooks/"+hook, map[string]any{"url": rc.url()}, http.StatusOK)
}

func (rc *nodeReceiver) addr() string { return fmt.Sprintf("127.0.0.1:%d", rc.port) }

func (rc *nodeReceiver) url() string { return "http://" + rc.addr() + "/keygate" }

// wait waits until a line satisfies match.
func (rc *nodeReceiver) wait(what string, match func(receiverLine) bool) receiverLine {
	rc.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		rc.mu.Lock()
		for _, l := range rc.lines {
			if match(l) {
				rc.mu.Unlock()
				return l
			}
		}
		ch := rc.cond
		rc.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			rc.mu.Lock()
			defer rc.mu.Unlock()
			rc.t.Fatalf("receiver: no %s within 20s; it printed %+v", what, rc.lines)
		}
	}
}

// snapshot returns the lines so far.
func (rc *nodeReceiver) snapshot() []receiverLine {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receiverLine(nil), rc.lines...)
}

// hookDelivery is a delivery as GET /v1/webhooks/{id}/deliveries lists it.
type hookDelivery struct {
	ID        string `json:"id"`
	EventID   string `json:"eventId"`
	EventType string `json:"eventType"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
}

// settled waits until every delivery of webhook hook is DELIVERED and
// returns them.
func (e *env) settled(hook string) []hookDelivery {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var ds []hookDelivery
		json.Unmarshal(e.api(http.MethodGet, "/v1/webhooks/"+hook+"/deliveries?size=100", nil, http.StatusOK), &ds)
		done := len(ds) > 0
		for _, d := range ds {
			done = done && d.Status == "DELIVERED"
		}
		if done {
			return ds
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("deliveries not all delivered: %+v", ds)
		}
	}
}

// TestInteropStandardWebhooksNode: a receiver that verifies every delivery
// with the published standardwebhooks npm package (interop/, pinned by its
// lockfile; the README's receiver, verbatim) gets every event of keys and
// users created and revoked through a real keygate, each once; a replay
// repeats the webhook-id and the receiver dedupes it; forged and stale
// deliveries are refused by the library; and a secret rotation with a
// grace period lets the receiver switch from the old secret to the new one
// without refusing a delivery, while one without a grace period ends the
// old secret at once.
func TestInteropStandardWebhooksNode(t *testing.T) {
	dir := installInterop(t)
	e := startEventsEnv(t, "", "", testcaddy.Options{})
	e.bootstrap()
	// The webhook first, for its secret; then the receiver, where it listens.
	var hook struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/webhooks", map[string]any{
		"url": "http://127.0.0.1:9/not-yet", "events": []string{"*"},
	}, http.StatusCreated), &hook)
	rc := startNodeReceiver(t, dir, hook.Secret)
	e.api(http.MethodPatch, "/v1/webhooks/"+hook.ID, map[string]any{"url": rc.url()}, http.StatusOK)
	first := func(id string) func(receiverLine) bool {
		return func(l receiverLine) bool { return l.ID == id && l.Type != "" }
	}

	// Events of keys and users, each verified by the library.
	userID, keyID, _ := e.newUserKey("acme", "etl", time.Now().Add(48*time.Hour))
	e.api(http.MethodPatch, "/v1/users/"+userID+"/keys/"+keyID, map[string]any{"name": "etl-2"}, http.StatusOK)
	e.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK)
	ds := e.settled(hook.ID)
	types := map[string]bool{}
	for _, d := range ds {
		l := rc.wait(d.EventType+" "+d.EventID, first(d.EventID))
		if l.Type != d.EventType {
			t.Errorf("event %s: the receiver saw type %q, keygate sent %q", d.EventID, l.Type, d.EventType)
		}
		types[l.Type] = true
	}
	for _, typ := range []string{"user.created", "permission.changed", "key.created", "key.updated", "key.revoked"} {
		if !types[typ] {
			t.Errorf("no %s reached the receiver (saw %v)", typ, types)
		}
	}

	// A replay repeats the webhook-id: the receiver sees a duplicate.
	replayed := ds[0]
	e.api(http.MethodPost, "/v1/deliveries/"+replayed.ID+"/replay", nil, http.StatusOK)
	rc.wait("duplicate of "+replayed.EventID, func(l receiverLine) bool { return l.ID == replayed.EventID && l.Duplicate })

	// The library refuses what keygate did not sign, and stale deliveries.
	forge := func(secret string, at time.Time) int {
		t.Helper()
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(`{"specversion":"1.0","id":"evt_forged","type":"key.created"}`)
		sig, _ := wh.Sign("evt_forged", at, body)
		req, _ := http.NewRequest(http.MethodPost, rc.url(), bytes.NewReader(body))
		req.Header.Set("webhook-id", "evt_forged")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := forge("whsec_"+strings.Repeat("A", 43)+"=", time.Now()); st != http.StatusUnauthorized {
		t.Fatalf("a delivery signed with another secret: %d", st)
	}
	if st := forge(hook.Secret, time.Now().Add(-10*time.Minute)); st != http.StatusUnauthorized {
		t.Fatalf("a stale delivery: %d", st)
	}
	rc.wait("refusal of the forged delivery", func(l receiverLine) bool { return l.ID == "evt_forged" && l.Refused != "" })

	// Rotation with a grace period: the receiver still holds the old
	// secret and verifies; then it switches to the new one and verifies.
	var rot struct {
		Secret                  string     `json:"secret"`
		PreviousSecretExpiresAt *time.Time `json:"previousSecretExpiresAt"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/webhooks/"+hook.ID+"/rotate-secret", map[string]any{"gracePeriod": "1h"}, http.StatusOK), &rot)
	if !strings.HasPrefix(rot.Secret, "whsec_") || rot.Secret == hook.Secret || rot.PreviousSecretExpiresAt == nil {
		t.Fatalf("rotation: %+v", rot)
	}
	onOld, _, _ := e.newUserKey("acme", "during-grace-old", time.Now().Add(48*time.Hour))
	rc.wait("user.created during the grace period, old secret", func(l receiverLine) bool { return l.Subject == "users/"+onOld })
	e.settled(hook.ID)
	rc.restart(e, hook.ID, rot.Secret)
	onNew, _, _ := e.newUserKey("acme", "during-grace-new", time.Now().Add(48*time.Hour))
	rc.wait("user.created during the grace period, new secret", func(l receiverLine) bool { return l.Subject == "users/"+onNew })
	ds = e.settled(hook.ID)
	for _, l := range rc.snapshot() {
		if l.Refused != "" && l.ID != "evt_forged" {
			t.Fatalf("a delivery was refused during the grace period: %+v", l)
		}
	}

	// Rotation without one: the secret the receiver holds ends at once.
	var rot2 struct {
		Secret string `json:"secret"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/webhooks/"+hook.ID+"/rotate-secret", nil, http.StatusOK), &rot2)
	after, _, _ := e.newUserKey("acme", "after-rotation", time.Now().Add(48*time.Hour))
	refused := rc.wait("refusal after a rotation without grace", func(l receiverLine) bool { return l.Refused != "" && l.ID != "evt_forged" })
	rc.restart(e, hook.ID, rot2.Secret)
	rc.wait("the refused delivery, retried, with the new secret", first(refused.ID))
	rc.wait("user.created after the rotation", func(l receiverLine) bool { return l.Subject == "users/"+after })
	ds = e.settled(hook.ID)

	// Every delivery reached the receiver once (a first arrival per id),
	// and nothing but the forged and the post-rotation attempts was refused.
	firsts := map[string]int{}
	for _, l := range rc.snapshot() {
		if l.Type != "" {
			firsts[l.ID]++
		}
	}
	for _, d := range ds {
		if firsts[d.EventID] != 1 {
			t.Errorf("event %s (%s) arrived %d times as new", d.EventID, d.EventType, firsts[d.EventID])
		}
	}
	if len(firsts) != len(ds) {
		t.Errorf("%d events arrived, keygate lists %d deliveries", len(firsts), len(ds))
	}
	t.Logf("%d deliveries, each verified by standardwebhooks (npm) and seen once; a replay deduped; forged, stale and post-rotation deliveries refused", len(ds))
}
