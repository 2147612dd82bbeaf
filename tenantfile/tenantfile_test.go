package tenantfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const sampleYAML = `format: keygate.tenant
version: 1
tenant:
  id: acme
  name: Acme Inc.
users:
- id: "100000000000001"
  name: billing service
  type: SERVICE
  role: MEMBER
  customerRoles: [reports, billing]
  requestLimit: 600
  meta: {plan: gold}
  tags: [imported]
  keys:
  - id: abcdefghijklmnop
    name: ci
    expiresAt: 2031-01-01T00:00:00Z
- id: ops-2
  name: ops two
  role: ADMIN
permissions:
- user: "200000000000002"
  role: VIEWER
`

// compileSchema compiles Schema with a maintained JSON Schema library.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("tenant-file.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("tenant-file.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// validJSON validates a file's JSON form against the schema.
func validJSON(t *testing.T, s *jsonschema.Schema, js []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

func TestParseAndSchema(t *testing.T) {
	f, err := Parse([]byte(sampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Users) != 2 || f.Users[0].Keys[0].ExpiresAt.Year() != 2031 || string(f.Users[0].Meta) != `{"plan":"gold"}` {
		t.Fatalf("parsed: %+v", f)
	}
	schema := compileSchema(t)
	for _, format := range []string{"json", "yaml"} {
		out, err := Marshal(f, format)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("%s round trip: %v\n%s", format, err, out)
		}
		if n := Changes(Plan(back, f, true)); n != 0 {
			t.Fatalf("%s round trip changed %d things", format, n)
		}
	}
	js, _ := Marshal(f, "json")
	if err := validJSON(t, schema, js); err != nil {
		t.Fatalf("schema refuses a written file: %v", err)
	}
	for name, bad := range map[string]string{
		"unknown member":     `{"format":"keygate.tenant","version":1,"tenant":{"id":"a"},"user":[]}`,
		"bad role":           `{"format":"keygate.tenant","version":1,"tenant":{"id":"a"},"users":[{"id":"u","name":"n","role":"BOSS"}]}`,
		"key without expiry": `{"format":"keygate.tenant","version":1,"tenant":{"id":"a"},"users":[{"id":"u","name":"n","keys":[{"id":"k","name":"k"}]}]}`,
	} {
		if validJSON(t, schema, []byte(bad)) == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: Parse accepts it", name)
		}
	}
}

func TestParseRefusesNewerVersion(t *testing.T) {
	_, err := Parse([]byte(strings.Replace(sampleYAML, "version: 1", "version: 2", 1)))
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("version 2: %v", err)
	}
	if _, err := Parse([]byte(strings.Replace(sampleYAML, "keygate.tenant", "other", 1))); err == nil {
		t.Fatal("wrong format accepted")
	}
	dup := sampleYAML + "- user: \"200000000000002\"\n  role: ADMIN\n"
	if _, err := Parse([]byte(dup)); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate permission: %v", err)
	}
}

// TestPlan: an empty store gets everything created; the same file again
// changes nothing; an edit changes exactly that field; prune archives what
// the file no longer lists; keys are never created.
func TestPlan(t *testing.T) {
	want, _ := Parse([]byte(sampleYAML))
	plan := Plan(nil, want, false)
	var lines []string
	for _, c := range plan {
		lines = append(lines, c.String())
	}
	got := strings.Join(lines, "\n")
	for _, w := range []string{"create tenant acme", "create user 100000000000001 (billing service)", "create user ops-2", "skip key abcdefghijklmnop", "create permission 200000000000002"} {
		if !strings.Contains(got, w) {
			t.Errorf("plan lacks %q:\n%s", w, got)
		}
	}
	cur, _ := Parse([]byte(sampleYAML))
	if n := Changes(Plan(cur, want, true)); n != 0 {
		t.Fatalf("same file: %d changes", n)
	}
	edited, _ := Parse([]byte(strings.Replace(sampleYAML, "requestLimit: 600", "requestLimit: 900", 1)))
	plan = Plan(cur, edited, false)
	if Changes(plan) != 1 || plan[0].String() != "update user 100000000000001 (billing service): requestLimit 600 → 900" {
		t.Fatalf("edit: %v", plan)
	}
	pruned, _ := Parse([]byte(sampleYAML))
	pruned.Users = pruned.Users[:1] // drop ops-2
	pruned.Users[0].Keys = nil      // and the key
	pruned.Permissions = nil        // and the permission
	plan = Plan(cur, pruned, true)
	if Changes(plan) != 3 {
		t.Fatalf("prune: %v", plan)
	}
	var calls []string
	n, err := Apply(func(method, path, ifMatch string, body any) error {
		b, _ := json.Marshal(body)
		calls = append(calls, method+" "+path+" "+ifMatch+" "+string(b))
		return nil
	}, "acme", plan, Versions{Users: map[string]int64{"ops-2": 4}, Keys: map[string]int64{"abcdefghijklmnop": 2}, Permissions: map[string]int64{"200000000000002": 7}})
	if err != nil || n != 3 {
		t.Fatal(n, err)
	}
	want3 := []string{
		`PATCH /v1/users/ops-2 "4" {"status":"INACTIVE"}`,
		`PATCH /v1/users/100000000000001/keys/abcdefghijklmnop "2" {"status":"INACTIVE"}`,
		`POST /v1/permissions "7" {"accessControlEntities":[],"customerRoles":[],"role":"VIEWER","status":"ARCHIVED","user":{"id":"200000000000002"},"workspace":{"id":"acme"}}`,
	}
	if strings.Join(calls, "\n") != strings.Join(want3, "\n") {
		t.Fatalf("calls:\n%s", strings.Join(calls, "\n"))
	}
	stop := errors.New("412")
	if _, err := Apply(func(string, string, string, any) error { return stop }, "acme", plan, Versions{}); !errors.Is(err, stop) {
		t.Fatal(err)
	}
}
