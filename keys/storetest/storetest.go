// Package storetest is the conformance suite every keys.Store must pass.
// The suite is the Store contract: CRUD, uniqueness, versions, state
// machines, permission rules, the two-secret limit, history, paging and
// concurrent writers.
//
// Stores that implement keys.Notifier must return from Subscribe once the
// subscription is in place (delivery then continues in the background until
// the context ends), so that a change made after Subscribe returns is
// delivered.
package storetest

import (
	"testing"

	"github.com/keygate/keygate/keys"
)

// Run runs the suite. newStore returns a fresh, empty store for each
// subtest; subtests run in parallel, each on its own store. Time-dependent
// checks use the real clock with margins.
func Run(t *testing.T, newStore func(t *testing.T) keys.Store) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// testCase is one subtest of the suite.
type testCase struct {
	name string
	fn   func(t *testing.T, s keys.Store)
}

// cases lists the suite's subtests.
var cases []testCase
