package module

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestExposedAdmin: which admin addresses keygate warns about.
func TestExposedAdmin(t *testing.T) {
	for listen, exposed := range map[string]bool{
		"localhost:2019":                    false,
		"LOCALHOST:2019":                    false,
		"127.0.0.1:2019":                    false,
		"127.0.0.2:2019":                    false,
		"[::1]:2019":                        false,
		"tcp/127.0.0.1:2019":                false,
		"unix//run/keygate/admin.sock|0600": false,
		"unix//run/keygate/admin.sock":      false,
		"fd/3":                              false,
		":2019":                             true,
		"0.0.0.0:2019":                      true,
		"[::]:2019":                         true,
		"10.0.0.5:2019":                     true,
		"[2001:db8::1]:2019":                true,
		"admin.internal:2019":               true,
		"tcp4/192.0.2.7:2019":               true,
	} {
		if got := exposedAdmin(listen) != ""; got != exposed {
			t.Errorf("exposedAdmin(%q) = %q, want exposed %v", listen, exposedAdmin(listen), exposed)
		}
	}
}

// TestAdminListenReadable: keygate can read the admin address of the config
// being provisioned from this Caddy version (a Caddy that changed how it
// keeps the config fails here, not silently in production).
func TestAdminListenReadable(t *testing.T) {
	for _, tc := range []struct {
		admin *caddy.AdminConfig
		want  string
	}{
		{nil, caddy.DefaultAdminListen},
		{&caddy.AdminConfig{}, caddy.DefaultAdminListen},
		{&caddy.AdminConfig{Listen: "0.0.0.0:2999"}, "0.0.0.0:2999"},
		{&caddy.AdminConfig{Listen: "unix//tmp/a.sock|0600"}, "unix//tmp/a.sock|0600"},
		{&caddy.AdminConfig{Disabled: true, Listen: "0.0.0.0:2999"}, ""},
	} {
		ctx, err := caddy.ProvisionContext(&caddy.Config{Admin: tc.admin})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := adminListen(ctx)
		if !ok || got != tc.want {
			t.Errorf("admin %+v: adminListen = %q, %v; want %q", tc.admin, got, ok, tc.want)
		}
	}
}
