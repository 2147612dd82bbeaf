package module_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/filestore"
	"github.com/keygate/keygate/keys/redisstore"
)

// overviewCaddyfile: a gateway for acme on /x whose clients may fail five
// authentications before the throttle refuses them (the rest of the site
// answers the start-up probes, which must not count).
const overviewCaddyfile = `{
	admin {admin}
	keygate {
		%s
		auth_failures 1/1h 5
	}
}
http://127.0.0.1:{gw} {
	handle /x {
		keygate {
			tenant acme
			limit 1000
		}
		reverse_proxy {up}
	}
	respond "up" 200
}
http://127.0.0.1:{api} {
	keygate_admin
}
`

// TestGatewayOverview: requests through a real gateway, one of each kind,
// come back in the tenant overview of the admin API with their outcome and
// refusal reason (allowed, rate-limited, bad key, expired, revoked,
// coverage, forbidden, throttled), the top users and the expiring keys.
func TestGatewayOverview(t *testing.T) {
	t.Run("file", func(t *testing.T) { testGatewayOverview(t, "store file") })
	t.Run("redis", func(t *testing.T) {
		_, prefix := testredis.Client(t)
		testGatewayOverview(t, fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t\tprefix %s\n\t\t\ttimeout 2s\n\t\t}\n\t\tmaster_key %s",
			testredis.Options(t).Addr, prefix, testMasterKey))
	})
}

func testGatewayOverview(t *testing.T, store string) {
	up := newUpstream(t)
	e := startGateway(t, fmt.Sprintf(overviewCaddyfile, store), up, testcaddy.Options{})
	e.bootstrap()
	// The gateway calls come from 127.0.0.2: the throttle they trip is the
	// client's, and the admin API (which shares it) is called from
	// 127.0.0.1.
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
	}).DialContext}}
	defer client.CloseIdleConnections()
	send := func(req *http.Request) int {
		t.Helper()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	code := func(hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.gateway+"/x", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return send(req)
	}
	want := func(got, status int, what string) {
		t.Helper()
		if got != status {
			t.Fatalf("%s: %d, want %d", what, got, status)
		}
	}
	soon := time.Now().Add(72 * time.Hour)
	busyID, _, busy := e.newUserKey("acme", "busy", soon)
	limitedID, _, limited := e.newUserKey("acme", "limited", time.Now().Add(30*24*time.Hour))
	e.setRequestLimit(limitedID, 1)
	archivedID, _, archived := e.newUserKey("acme", "archived", time.Now().Add(30*24*time.Hour))
	expUser, expKey, expired := e.newUserKey("acme", "expired", time.Now().Add(30*24*time.Hour))
	revUser, revKey, revoked := e.newUserKey("acme", "revoked", time.Now().Add(30*24*time.Hour))
	app := e.appUser("acme", "signer")
	_, secret := e.newSecret(app, "s")

	for range 3 {
		want(code(map[string]string{"X-Api-Key": busy}), 200, "busy")
	}
	want(code(map[string]string{"X-Api-Key": limited}), 200, "limited, first")
	want(code(map[string]string{"X-Api-Key": limited}), 429, "limited, second")
	e.api(http.MethodPost, "/v1/permissions", map[string]any{
		"user": map[string]any{"id": archivedID}, "workspace": map[string]any{"id": "acme"}, "role": "MEMBER", "status": "ARCHIVED",
	}, http.StatusOK)
	want(code(map[string]string{"X-Api-Key": archived}), 403, "archived permission")
	// The five failures the throttle allows: then it refuses the client.
	e.api(http.MethodPatch, "/v1/users/"+expUser+"/keys/"+expKey, map[string]any{"expiresAt": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}, http.StatusOK)
	want(code(map[string]string{"X-Api-Key": expired}), 401, "expired key")
	e.api(http.MethodDelete, "/v1/users/"+revUser+"/keys/"+revKey, nil, http.StatusOK)
	want(code(map[string]string{"X-Api-Key": revoked}), 401, "revoked key")
	want(code(map[string]string{"X-Api-Key": "kg_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)}), 401, "unknown key")
	want(code(nil), 401, "no credential")
	// A signature that covers only the host: valid, but binds nothing.
	req, _ := http.NewRequest(http.MethodGet, e.gateway+"/x", nil)
	params := fmt.Sprintf(`("@authority");created=%d;keyid="%s";alg="hmac-sha256"`, time.Now().Unix(), app)
	base := fmt.Sprintf("\"@authority\": %s\n\"@signature-params\": %s", req.URL.Host, params)
	req.Header.Set("Signature-Input", "sig1="+params)
	req.Header.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(signHMAC256([]byte(secret), base))+":")
	want(send(req), 401, "signature without coverage")
	// The client has failed five times: throttled, even with a good key.
	want(code(map[string]string{"X-Api-Key": busy}), 429, "throttled")
	want(code(nil), 429, "throttled again")

	// The gateway adds its counts to the store every 10 seconds.
	var ov admin.Overview
	deadline := time.Now().Add(40 * time.Second)
	for {
		json.Unmarshal(e.api(http.MethodGet, "/v1/tenants/acme/overview", nil, http.StatusOK), &ov)
		if ov.LastHour.Requests >= 13 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	got := ov.LastHour.UsageTotals
	exp := admin.UsageTotals{Requests: 13, Allowed: 4, Limited: 1, Refused: 6,
		Refusals:  admin.Refusals{BadKey: 2, Expired: 1, Revoked: 1, Coverage: 1, Forbidden: 1},
		Throttled: 2}
	if got != exp {
		t.Fatalf("overview last hour = %+v, want %+v", got, exp)
	}
	if ov.LastDay.UsageTotals != exp {
		t.Errorf("overview last day = %+v, want %+v", ov.LastDay.UsageTotals, exp)
	}
	if top := ov.TopByRequests; top.Total < 6 || top.Items[0].UserID != busyID || top.Items[0].Requests != 3 {
		t.Errorf("top by requests = %+v", top)
	}
	if top := ov.TopByRefusals; top.Total != 4 {
		t.Errorf("top by refusals = %+v, want the four users refused (archived, expired, revoked, signer)", top)
	}
	found := false
	for _, k := range ov.ExpiringKeys.Items {
		found = found || k.UserID == busyID
	}
	if !found || ov.ExpiringKeys.Total != 1 {
		t.Errorf("expiring keys = %+v, want busy's key (3 days)", ov.ExpiringKeys)
	}
}

// TestDeletionResumesOnStart (seed 004): a user left DELETING by a
// deletion interrupted between its two steps (prepared in the store before
// keygate runs) is DELETED once keygate has started, on both stores.
func TestDeletionResumesOnStart(t *testing.T) {
	prepare := func(t *testing.T, s keys.Store) string {
		t.Helper()
		ctx := context.Background()
		if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "test"); err != nil {
			t.Fatal(err)
		}
		u, err := s.CreateUser(ctx, keys.User{Name: "half-deleted", PrimaryTenant: "acme"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		// The first step only, as a crash right after it leaves it.
		if _, err := s.UpdateUser(ctx, u.ID, 0, func(u *keys.User) error { u.Status = keys.UserDeleting; return nil }, "test"); err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	check := func(t *testing.T, global, userID string) {
		up := newUpstream(t)
		e := startGateway(t, fmt.Sprintf(entitiesCaddyfile, global), up, testcaddy.Options{})
		e.bootstrap()
		var u keys.User
		deadline := time.Now().Add(20 * time.Second)
		for {
			json.Unmarshal(e.api(http.MethodGet, "/v1/users/"+userID, nil, http.StatusOK), &u)
			if u.Status == keys.UserDeleted || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if u.Status != keys.UserDeleted {
			t.Fatalf("after start the user is %s, want DELETED", u.Status)
		}
		var hist []keys.HistoryEntry
		json.Unmarshal(e.api(http.MethodGet, "/v1/users/"+userID+"/history", nil, http.StatusOK), &hist)
		if len(hist) == 0 || hist[0].Action != "user.deleted" || hist[0].Actor != "system" {
			t.Fatalf("history = %+v", hist)
		}
	}
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keygate.db")
		s, err := filestore.NewStore(path, filestore.Options{}, keys.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		id := prepare(t, s)
		s.Close()
		check(t, fmt.Sprintf("keygate {\n\t\tstore file %s\n\t}", path), id)
	})
	t.Run("redis", func(t *testing.T) {
		client, prefix := testredis.Client(t)
		s := redisstore.NewStore(client, redisstore.Options{Prefix: prefix, Timeout: 2 * time.Second}, keys.StoreOptions{})
		id := prepare(t, s)
		check(t, redisGlobal(testredis.Options(t).Addr, prefix, "timeout 2s"), id)
	})
}
