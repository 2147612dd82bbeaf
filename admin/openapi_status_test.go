package admin

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// observed collects, across every test of the package, the statuses each
// route answered ("METHOD /pattern" → statuses); TestMain then checks that
// the OpenAPI document lists each of them.
var observed = struct {
	sync.Mutex
	m map[string]map[int]bool
}{m: map[string]map[int]bool{}}

// observeStatus records that the route with pattern answered code. Requests
// that matched no route (404 catch-all, 405) are not a route's answers.
func observeStatus(pattern string, code int) {
	if !strings.Contains(pattern, " ") {
		return
	}
	observed.Lock()
	defer observed.Unlock()
	if observed.m[pattern] == nil {
		observed.m[pattern] = map[int]bool{}
	}
	observed.m[pattern][code] = true
}

// checkObservedStatuses reports every observed status the OpenAPI document
// does not list for its route; false when there is one.
func checkObservedStatuses() bool {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		fmt.Fprintln(os.Stderr, "decoding the OpenAPI document:", err)
		return false
	}
	observed.Lock()
	defer observed.Unlock()
	ok := true
	for pattern, codes := range observed.m {
		method, path, _ := strings.Cut(pattern, " ")
		op := doc.Paths[path][strings.ToLower(method)]
		var missing []int
		for code := range codes {
			if _, listed := op.Responses[strconv.Itoa(code)]; !listed {
				missing = append(missing, code)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			fmt.Fprintf(os.Stderr, "FAIL: OpenAPI: %s answered %v, which the document does not list\n", pattern, missing)
			ok = false
		}
	}
	return ok
}
