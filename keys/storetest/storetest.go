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
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// Run runs the suite. newStore returns a fresh, empty store for each
// subtest; subtests run in parallel, each on its own store. Time-dependent
// checks use the real clock with margins of minutes.
func Run(t *testing.T, newStore func(t *testing.T) keys.Store) {
	t.Helper()
	for _, tc := range cases() {
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
func cases() []testCase {
	return []testCase{
		{"Tenants", testTenants},
		{"UserCRUD", testUserCRUD},
		{"UserValidation", testUserValidation},
		{"UserNameUnique", testUserNameUnique},
		{"UserVersions", testUserVersions},
		{"UserStateMachine", testUserStateMachine},
		{"DeleteUser", testDeleteUser},
		{"Purge", testPurge},
		{"Permissions", testPermissions},
		{"PermissionList", testPermissionList},
		{"Keys", testKeys},
		{"KeyRevoked", testKeyRevoked},
		{"ReplaceKey", testReplaceKey},
		{"Secrets", testSecrets},
		{"History", testHistory},
		{"TouchLastUsed", testTouchLastUsed},
		{"ListUsers", testListUsers},
		{"ListUsersTenant", testListUsersTenant},
		{"Activity", testActivity},
		{"SigningKeysAndMeta", testSigningKeysAndMeta},
		{"ResealSecrets", testResealSecrets},
		{"Invalidations", testInvalidations},
		{"ConcurrentUpdate", testConcurrentUpdate},
		{"ConcurrentCreate", testConcurrentCreate},
		{"RoleMirror", testRoleMirror},
		{"ArchivedTenant", testArchivedTenant},
		{"InvitationConsent", testInvitationConsent},
		{"UserIDConflict", testUserIDConflict},
		{"PermissionFields", testPermissionFields},
		{"Retention", testRetention},
		{"UsageCounts", testUsageCounts},
		{"EventsOutbox", testEventsOutbox},
		{"DeliveryLifecycle", testDeliveryLifecycle},
		{"EventsOnce", testEventsOnce},
		{"KeyExpiryEvents", testKeyExpiryEvents},
		{"ReportLeak", testReportLeak},
		{"Webhooks", testWebhooks},
		{"WebhookSecretRotation", testWebhookSecretRotation},
		{"FailureCounts", testFailureCounts},
		{"Import", testImport},
		{"ImportAtomic", testImportAtomic},
		{"Rehash", testRehash},
		{"DeletionSteps", testDeletionSteps},
		{"Sessions", testSessions},
		{"TenantUsage", testTenantUsage},
		{"ExpiringKeys", testExpiringKeys},
		{"HugePage", testHugePage},
	}
}

// ctx is the context of every call.
var ctx = context.Background()

const actor = "admin-1"

var hasher = keys.NewHasher(nil)

func mustTenant(t *testing.T, s keys.Store, id string) keys.Tenant {
	t.Helper()
	tn, err := s.CreateTenant(ctx, keys.Tenant{ID: id, Name: "Tenant " + id}, actor)
	if err != nil {
		t.Fatalf("CreateTenant(%s): %v", id, err)
	}
	return tn
}

func mustUser(t *testing.T, s keys.Store, tenant, name string) keys.User {
	t.Helper()
	u, err := s.CreateUser(ctx, keys.User{Name: name, Type: keys.UserTechnical, Role: keys.RoleMember, PrimaryTenant: tenant}, actor)
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// newKey returns an unsaved access key of u in its primary tenant.
func newKey(u keys.User, name string) keys.Key {
	_, k := keys.NewAccessKey(hasher, u.ID, u.PrimaryTenant, name, time.Now().Add(24*time.Hour))
	return k
}

func mustKey(t *testing.T, s keys.Store, u keys.User, name string) keys.Key {
	t.Helper()
	k, err := s.CreateKey(ctx, newKey(u, name), actor)
	if err != nil {
		t.Fatalf("CreateKey(%s): %v", name, err)
	}
	return k
}

func newSecret(u keys.User, name string, status keys.SecretStatus) keys.Secret {
	return keys.Secret{ID: keys.NewID(), UserID: u.ID, Name: name, Sealed: []byte("sealed-" + name), Status: status}
}

func mustSecret(t *testing.T, s keys.Store, u keys.User, name string) keys.Secret {
	t.Helper()
	sec, err := s.CreateSecret(ctx, newSecret(u, name, keys.SecretActive), actor)
	if err != nil {
		t.Fatalf("CreateSecret(%s): %v", name, err)
	}
	return sec
}

// setup returns a store's first tenant and a user in it.
func setup(t *testing.T, s keys.Store) (keys.Tenant, keys.User) {
	t.Helper()
	tn := mustTenant(t, s, "acme")
	return tn, mustUser(t, s, tn.ID, "ci-bot")
}

// wantErr fails unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

// must fails the test on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantField fails unless err is a *keys.ValidationError naming field.
func wantField(t *testing.T, what string, err error, field string) {
	t.Helper()
	var ve *keys.ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("%s: got %v, want a *keys.ValidationError", what, err)
		return
	}
	if !errors.Is(err, keys.ErrInvalid) {
		t.Errorf("%s: %v does not match ErrInvalid", what, err)
	}
	for _, f := range ve.Fields {
		if f.Field == field {
			return
		}
	}
	t.Errorf("%s: fields %v do not name %q", what, ve.Fields, field)
}

func set[T any](f func(*T)) func(*T) error {
	return func(v *T) error { f(v); return nil }
}

func names[T any](items []T, name func(T) string) string {
	out := ""
	for i, it := range items {
		if i > 0 {
			out += ","
		}
		out += name(it)
	}
	return out
}

func userNames(p keys.Page[keys.User]) string {
	return fmt.Sprintf("%d:%s", p.Total, names(p.Items, func(u keys.User) string { return u.Name }))
}

// newCancel returns a context canceled at the end of the test.
func newCancel(t *testing.T) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(t.Context())
	return c, cancel
}
