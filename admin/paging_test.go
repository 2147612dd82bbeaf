package admin

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// TestListsTakeAnyPage (issue 23, item 5): every list route answers any
// int64 page, with any size, without a 500: a page past the offset bound
// is a 400 naming page, one past the end an empty page.
func TestListsTakeAnyPage(t *testing.T) {
	e := newEnvPolicy(t, newFileStore, allCredentials)
	u := e.createUser(e.adminA, map[string]any{"name": "paged"})
	e.createKey(e.adminA, u.ID, "k")
	e.do("POST", "/v1/users/"+u.ID+"/secrets", e.adminA, nil).want(201)
	var hook WebhookView
	e.do("POST", "/v1/webhooks", e.adminA, map[string]any{"url": "https://a.example.com/h", "events": []string{"key.created"}}).want(201).data(&hook)
	lists := 0
	for _, rt := range routeTable {
		if !rt.List {
			continue
		}
		lists++
		// {id} of each kind of object with lists under it, by the segment
		// before it; a list route under another kind fails below with 404.
		id := u.ID
		if before, _, ok := strings.Cut(rt.Pattern, "/{id}"); ok {
			switch before[strings.LastIndexByte(before, '/')+1:] {
			case "workspaces", "tenants":
				id = "a"
			case "webhooks":
				id = hook.ID
			}
		}
		path := strings.Replace(rt.Pattern, "{id}", id, 1)
		for _, key := range []string{e.rootKey, e.adminA} {
			for _, q := range []string{
				"page=" + strconv.FormatInt(math.MaxInt64, 10) + "&size=100",
				"page=" + strconv.FormatInt(math.MaxInt64, 10),
				"page=" + strconv.FormatInt(math.MaxInt64/100+2, 10) + "&size=100",
				"page=" + strconv.FormatInt(math.MaxInt64/30, 10),
				"page=9223372036854775808",
			} {
				e.do("GET", path+"?"+q, key, nil).wantProblem(400, "page")
			}
			// The last page the offset bound allows is an empty page.
			last := strconv.Itoa(maxOffset/100 + 1)
			res := e.do("GET", path+"?size=100&page="+last, key, nil).want(200)
			if env := res.envelope(); env.Page != maxOffset/100+1 {
				t.Fatalf("%s page %s: envelope %+v", path, last, env)
			}
		}
	}
	if lists < 10 {
		t.Fatalf("%d list routes", lists)
	}
}
