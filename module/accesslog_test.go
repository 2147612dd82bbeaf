package module_test

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// TestAccessLogsEverySpelling (issue 23, item 7): the keygate log format
// removes every spelling of every credential keygate reads or strips (the
// code before the fix removed canonical names only, and wrote X_Api_Key in
// clear), the route's own key_header and key_query included; a second
// keygate site whose log uses Caddy's plain format is warned about by
// itself, though another site uses the keygate format. And (item 3) the
// server of that second site, which sets no read timeouts, is warned about
// once; the first one sets them.
func TestAccessLogsEverySpelling(t *testing.T) {
	dir := t.TempDir()
	logged, plain := dir+"/keygate.log", dir+"/plain.log"
	gw2 := testcaddy.FreePort(t)
	cf := `{
	admin {admin}
	servers :{gw} {
		timeouts {
			read_header 10s
			read_body 1m
		}
	}
}
http://127.0.0.1:{gw} {
	log {
		output file ` + logged + `
		format keygate
	}
	keygate {
		tenant acme
		key_header X-Team-Key
		key_query token
		replay_protection off
	}
	reverse_proxy {up}
}
http://127.0.0.1:` + strconv.Itoa(gw2) + ` {
	log {
		output file ` + plain + `
	}
	keygate {
		tenant acme
	}
	reverse_proxy {up}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`
	e := startGateway(t, cf, newUpstream(t), testcaddy.Options{})
	e.bootstrap()

	n := 0
	secret := func() string { n++; return fmt.Sprintf("SeCrEt%03dx", n) }
	var sent []string
	send := func(path string, hdr map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.gateway+path, nil)
		for k, v := range hdr {
			req.Header[k] = []string{v} // as spelled, not canonicalized
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, name := range []string{"X-Api-Key", "X_Api_Key", "x_api_key", "X-API-KEY", "x-api_key", "X-Team-Key", "X_Team_Key", "x-team_key",
		"Authorization", "Proxy-Authorization", "Signature", "signature-input", "Signature_Input", "X-Amz-Security-Token", "X_Amz_Security_Token",
		"X-Mac-Value", "X_Mac_Value", "x-mac-userid", "X-Mac-Timestamp", "X-Mac-Version"} {
		s := secret()
		sent = append(sent, s)
		send("/h", map[string]string{name: s, "X-Trace": "keep-me"})
	}
	for _, param := range []string{"token", "TOKEN", "api_key", "Api_Key", "%61pi_key", "X-Amz-Signature", "x-amz-credential",
		"X-Amz-Security-Token", "X%2DAmz%2DSignature", "X-Amz-Date"} {
		s := secret()
		sent = append(sent, s)
		send("/q?page=2&"+param+"="+s+"&keep=yes", nil)
	}

	var log string
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(logged)
		log = string(data)
		if strings.Count(log, "handled request") >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := strings.Count(log, "handled request"); got < n {
		t.Fatalf("access log has %d of %d entries", got, n)
	}
	for _, s := range sent {
		if strings.Contains(log, s) {
			line := log[max(0, strings.Index(log, s)-300):min(len(log), strings.Index(log, s)+40)]
			t.Errorf("credential %s in the access log: …%s", s, line)
		}
	}
	if !strings.Contains(log, "keep-me") || !strings.Contains(log, "page=2") || !strings.Contains(log, "keep=yes") {
		t.Errorf("the log lost what is not a credential:\n%.2000s", log)
	}

	// One warning of each kind, about the second site's server only.
	for _, warning := range []string{"do not use the keygate format", "has no read_body timeout"} {
		var lines []string
		for _, line := range strings.Split(e.srv.Logs(), "\n") {
			if strings.Contains(line, warning) {
				lines = append(lines, line)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], ":"+strconv.Itoa(gw2)) {
			t.Fatalf("want one %q warning, about the server on port %d; got %q", warning, gw2, lines)
		}
	}
	if !strings.Contains(e.srv.Logs(), `"host":"127.0.0.1"`) {
		t.Error("the log warning does not name the site's host")
	}
}
