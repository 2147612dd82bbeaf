package module

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzScrubLoggedURI checks the query filter of the keygate log format on
// any request-target: the path is kept as sent; every parameter whose
// decoded name is a credential's (api_key, X-Amz-*, a route's key_query,
// in any case) is gone; every other parameter is kept as sent and in
// order; nothing changes when nothing is removed; and a second pass
// removes nothing.
func FuzzScrubLoggedURI(f *testing.F) {
	for _, s := range []string{
		"/x?api_key=kg_1&page=2", "/x?API_KEY=a&X-Amz-Signature=b&keep=1", "/?%61pi_key=1", "/a?X%2DAmz%2DCredential=x",
		"/a?token=1&token=2&tok=3", "/a?&&=&%zz=1&api_key", "/a", "/a?", "?api_key=1", "/a?x-amz-=1&+api_key=2",
	} {
		f.Add(s)
	}
	creds := credentialSet{headers: loggedCredentialHeaders, queries: append(append([]string(nil), loggedCredentialQuery...), "token")}
	drop := func(name string) bool { return creds.query(name) }
	f.Fuzz(func(t *testing.T, uri string) {
		out, removed := scrubLoggedURI(uri, drop)
		path, query, hasQuery := strings.Cut(uri, "?")
		if !strings.HasPrefix(out, path) {
			t.Fatalf("path changed: %q → %q", uri, out)
		}
		if !removed {
			if out != uri {
				t.Fatalf("nothing removed, yet %q → %q", uri, out)
			}
		}
		var want []string
		if hasQuery && query != "" {
			for _, part := range strings.Split(query, "&") {
				k, _, _ := strings.Cut(part, "=")
				if dk, err := url.QueryUnescape(k); err == nil {
					k = dk
				}
				if !drop(k) {
					want = append(want, part)
				}
			}
		}
		if removed {
			_, got, _ := strings.Cut(out, "?")
			if got != strings.Join(want, "&") {
				t.Fatalf("%q → %q, want the query %q", uri, out, strings.Join(want, "&"))
			}
		}
		if again, more := scrubLoggedURI(out, drop); more || again != out {
			t.Fatalf("second pass changed %q → %q", out, again)
		}
	})
}
