package console_test

import (
	"bytes"
	"io"
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/console"
)

func TestHandler(t *testing.T) {
	h := console.Handler()
	for _, c := range []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/console/", 200, "text/html"},
		{"GET", "/console/app.js", 200, "text/javascript"},
		{"GET", "/console/style.css", 200, "text/css"},
		{"HEAD", "/console/api.js", 200, "text/javascript"},
		{"GET", "/console", 301, ""},
		{"GET", "/console/nope.js", 404, ""},
		{"GET", "/console/../console.go", 404, ""},
		{"POST", "/console/", 405, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, rec.Code, c.status)
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), c.ctype) {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, rec.Header().Get("Content-Type"))
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != console.CSP {
			t.Errorf("%s %s: CSP %q", c.method, c.path, got)
		}
	}
}

// TestAssetsStayStrict keeps the console compatible with its CSP and free
// of third-party resources: no inline script or style, no eval, no http(s)
// URL (a vendored library may name its home in its /*! … */ header).
func TestAssetsStayStrict(t *testing.T) {
	bad := []*regexp.Regexp{
		regexp.MustCompile(`<script>`), regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`\beval\(`), regexp.MustCompile(`new Function\(`), regexp.MustCompile(`innerHTML`),
	}
	url := regexp.MustCompile(`https?://[a-z0-9.-]+`)
	err := fs.WalkDir(console.Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := console.Files().Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		for _, re := range bad {
			if re.Match(b) {
				t.Errorf("%s matches %s: %q", p, re, re.Find(b))
			}
		}
		if strings.HasPrefix(p, "vendor/") && bytes.HasPrefix(b, []byte("/*!")) {
			if end := bytes.Index(b, []byte("*/")); end > 0 {
				b = b[end+2:]
			}
		}
		for _, u := range url.FindAllString(string(b), -1) {
			if u != "http://www.w3.org" { // XML namespaces, not requests
				t.Errorf("%s names %s: the console makes no third-party requests", p, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHandles(t *testing.T) {
	for p, want := range map[string]bool{"/console": true, "/console/": true, "/console/x.js": true, "/consoles": false, "/v1/users": false} {
		if console.Handles(p) != want {
			t.Errorf("Handles(%q) != %v", p, want)
		}
	}
}

// TestVendoredLicenses: every vendored file ships with its license.
func TestVendoredLicenses(t *testing.T) {
	entries, err := fs.ReadDir(console.Files(), "vendor")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	for name := range names {
		if strings.HasSuffix(name, ".LICENSE") {
			continue
		}
		lib, _, _ := strings.Cut(name, ".")
		if !names[lib+".LICENSE"] {
			t.Errorf("vendor/%s has no vendor/%s.LICENSE", name, lib)
		}
	}
}
