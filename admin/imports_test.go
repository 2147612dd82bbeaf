package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/keys"
)

func importSample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "import", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) importFile(key, query string, body []byte) *result {
	return e.do("POST", "/v1/imports?"+query, key, body, "Content-Type", "application/yaml")
}

// TestImportAPI: dry run writes nothing, an import creates users with an
// ACTIVE permission and keys found by their hash, a second import creates
// nothing, a tenant admin imports only into its own tenant, a missing
// expiry is refused, and every import is in the activity log with its source.
func TestImportAPI(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		file := importSample(t, "kong.yaml")
		exp := e.clk.Now().AddDate(1, 0, 0).Format("2006-01-02")

		e.importFile(e.adminA, "from=kong&tenant=a", file).wantProblem(400, "expires")
		e.importFile(e.adminA, "from=kong&tenant=b&expires="+exp, file).want(404)
		e.importFile(e.memberA, "from=kong&tenant=a&expires="+exp, file).want(403)
		e.importFile(e.adminA, "from=nope&tenant=a", file).wantProblem(400, "from")

		var dry ImportReport
		e.importFile(e.adminA, "from=kong&tenant=a&dryRun=true&expires="+exp, file).want(200).data(&dry)
		if !dry.DryRun || dry.Written || dry.Created != 4 || len(dry.Warnings) != 1 {
			t.Fatalf("dry run: %+v", dry)
		}
		var page []keys.User
		e.do("GET", "/v1/users?tenant=a&q=acme-mobile", e.adminA, nil).want(200).data(&page)
		if len(page) != 0 {
			t.Fatalf("the dry run wrote %d users", len(page))
		}

		var rep ImportReport
		e.importFile(e.adminA, "from=kong&tenant=a&expires="+exp, file).want(201).data(&rep)
		if !rep.Written || rep.Created != 4 {
			t.Fatalf("import: %+v", rep)
		}
		e.do("GET", "/v1/users?tenant=a&q=acme-mobile", e.adminA, nil).want(200).data(&page)
		if len(page) != 1 || page[0].Origin == nil || page[0].Origin.Source != "kong" || page[0].RequestLimit != 120 ||
			!strings.Contains(string(page[0].Meta), "cust-1001") {
			t.Fatalf("imported user: %+v", page)
		}
		var ks []KeyView
		e.do("GET", "/v1/users/"+page[0].ID+"/keys", e.adminA, nil).want(200).data(&ks)
		if len(ks) != 1 || ks[0].Masked != "…DB2J" || ks[0].Origin == nil || ks[0].Tags[0] != "v1" {
			t.Fatalf("imported keys: %+v", ks)
		}
		id, _, err := e.store.FindKeyByHash(t.Context(), []keys.KeyHash{{Sum: e.h.hasher.Sum("Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J")}})
		if err != nil || id != ks[0].ID {
			t.Fatalf("by hash: %q %v", id, err)
		}

		var again ImportReport
		e.importFile(e.adminA, "from=kong&tenant=a&expires="+exp, file).want(200).data(&again)
		if again.Written || again.Created != 0 || again.Skipped != 4 {
			t.Fatalf("second import: %+v", again)
		}
		var acts []keys.Activity
		e.do("GET", "/v1/activity?tenant=a", e.rootKey, nil).want(200).data(&acts)
		found := false
		for _, a := range acts {
			if a.Path == "/v1/imports?from=kong" && a.Status == 201 {
				found = true
			}
		}
		if !found {
			t.Fatalf("no activity entry for the import: %+v", acts)
		}
	})
}

// TestImportAPIAtomic: a file with one bad row writes nothing and names the
// row (422), continue=true writes the others.
func TestImportAPIAtomic(t *testing.T) {
	e := newEnv(t, newFileStore)
	csv := []byte("user_id,user_name,key_name,key,expires_at\n" +
		"u-1,one,k,csv-key-one-000001,2031-01-01\n" +
		"u-2,two,k,short,2031-01-01\n" +
		"u-3,three,k,csv-key-three-0003,2031-01-01\n")
	res := e.importFile(e.rootKey, "from=csv&tenant=a", csv)
	p := res.wantProblem(422, "line 3")
	if !strings.Contains(p.Detail, "nothing was written") {
		t.Fatalf("problem: %+v", p)
	}
	if _, err := e.store.GetUser(t.Context(), "u-1"); err == nil {
		t.Fatal("a failed import wrote a user")
	}
	var rep ImportReport
	e.importFile(e.rootKey, "from=csv&tenant=a&continue=true", csv).want(201).data(&rep)
	if rep.Created != 4 || rep.Failed != 2 {
		t.Fatalf("continue: %+v", rep)
	}
	if _, err := e.store.GetUser(t.Context(), "u-3"); err != nil {
		t.Fatal(err)
	}
}

// TestImportRetypeNeedsEveryTenant (issue 23 item 4, for imports): a
// re-import that changes the type of a user who also holds an ACTIVE
// permission in another tenant needs an administrator of that tenant too;
// a tenant admin's attempt fails the item and changes nothing, a
// superadmin's succeeds.
func TestImportRetypeNeedsEveryTenant(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		csv := []byte("user_id,user_name,user_type,role,customer_roles,key_name,key,key_sha256,expires_at\n" +
			"svc-x,x service,SERVICE,MEMBER,,primary,csv-retype-key-0a1b2c3d4e,,2031-01-01T00:00:00Z\n")
		e.do("POST", "/v1/imports?from=csv&tenant=a", e.adminA, csv, "Content-Type", "text/csv").want(201)
		var page []keys.User
		e.do("GET", "/v1/users?tenant=a&q=x%20service", e.adminA, nil).want(200).data(&page)
		if len(page) != 1 || page[0].Type != keys.UserService {
			t.Fatalf("imported user: %+v", page)
		}
		uid := page[0].ID
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": uid}, "workspaceId": "b", "role": "ADMIN", "status": "ACTIVE",
		}).wantOneOf(200, 201)

		retyped := []byte(strings.Replace(string(csv), ",SERVICE,", ",TECHNICAL,", 1))
		r := e.do("POST", "/v1/imports?from=csv&tenant=a", e.adminA, retyped, "Content-Type", "text/csv").want(422)
		if !strings.Contains(string(r.body), "tenant b") || !strings.Contains(string(r.body), "changing its type") {
			t.Fatalf("tenant admin's retype: %s", r.body)
		}
		var u keys.User
		e.do("GET", "/v1/users/"+uid, e.rootKey, nil).want(200).data(&u)
		if u.Type != keys.UserService {
			t.Fatalf("a refused import changed the type to %s", u.Type)
		}
		var rep ImportReport
		res := e.do("POST", "/v1/imports?from=csv&tenant=a", e.rootKey, retyped, "Content-Type", "text/csv").want(200)
		res.data(&rep)
		if env := res.envelope(); env.Code != 200 || env.Timestamp.IsZero() || env.Account != "a" {
			t.Fatalf("import envelope: code %d, timestamp %v, account %q", env.Code, env.Timestamp, env.Account)
		}
		e.do("GET", "/v1/users/"+uid, e.rootKey, nil).want(200).data(&u)
		if rep.Updated != 1 || u.Type != keys.UserTechnical {
			t.Fatalf("superadmin's retype: %+v, type %s", rep, u.Type)
		}
	})
}
