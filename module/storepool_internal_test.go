package module

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRedisTLSOptions: the tls_* options build a TLS configuration (none
// without them), and bad files are refused at provision with the option's
// name, never silently ignored.
func TestRedisTLSOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tc, err := redisTLS(StoreConfig{TLS: true}); tc != nil || err != nil {
		t.Fatalf("tls alone: %v, %v; want the system roots (nil config)", tc, err)
	}
	tc, err := redisTLS(StoreConfig{TLSServerName: "redis.internal"})
	if err != nil || tc == nil || tc.ServerName != "redis.internal" || tc.RootCAs != nil {
		t.Fatalf("tls_server_name: %+v, %v", tc, err)
	}
	for name, tc := range map[string]struct {
		sc   StoreConfig
		want string
	}{
		"missing CA":       {StoreConfig{TLSCA: filepath.Join(dir, "none.pem")}, "reading tls_ca"},
		"CA not PEM":       {StoreConfig{TLSCA: notPEM}, "holds no PEM certificate"},
		"cert without key": {StoreConfig{TLSCert: notPEM}, "tls_cert and tls_key go together"},
		"bad key pair":     {StoreConfig{TLSCert: notPEM, TLSKey: notPEM}, "loading tls_cert and tls_key"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := redisTLS(tc.sc); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := openStore(StoreConfig{Backend: "redis", Addresses: []string{"127.0.0.1:1"}, TLSCA: tc.sc.TLSCA,
				TLSCert: tc.sc.TLSCert, TLSKey: tc.sc.TLSKey}); err == nil {
				t.Fatal("openStore accepted the bad TLS files")
			}
		})
	}
}
