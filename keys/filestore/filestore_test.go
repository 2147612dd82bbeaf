package filestore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/storetest"
)

func newTestStore(t *testing.T) keys.Store {
	t.Helper()
	s, err := NewStore(filepath.Join(t.TempDir(), "sub", "keygate.db"), Options{}, keys.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, newTestStore)
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	start := time.Now()
	_, err = Open(path, Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: got %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "keygate.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := keys.NewStore(b, keys.StoreOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(context.Background(), "1"); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("GetUser on closed store: got %v, want ErrUnavailable", err)
	}
}

func TestIndexRange(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "keygate.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const n = 50
	err = b.Update(ctx, func(tx keys.Tx) error {
		for i := range n {
			if err := tx.IndexAdd("ix", fmt.Sprintf("%03d", i), fmt.Sprintf("id%03d", i)); err != nil {
				return err
			}
		}
		// Re-adding with another sort key moves the member.
		if err := tx.IndexAdd("ix", "zzz", "id000"); err != nil {
			return err
		}
		return tx.IndexAdd("other", "a", "x")
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.View(ctx, func(tx keys.Tx) error {
		if c, _ := tx.IndexCount("ix"); c != n {
			t.Errorf("count = %d, want %d", c, n)
		}
		for _, tc := range []struct {
			off, cnt int
			desc     bool
			want     []string
		}{
			{0, 2, false, []string{"id001", "id002"}},
			{48, 5, false, []string{"id049", "id000"}},
			{45, 2, false, []string{"id046", "id047"}},
			{0, 2, true, []string{"id000", "id049"}},
			{47, 5, true, []string{"id003", "id002", "id001"}},
			{10, 2, true, []string{"id040", "id039"}},
			{50, 1, false, nil},
		} {
			got, err := tx.IndexRange("ix", tc.off, tc.cnt, tc.desc)
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("IndexRange(%d,%d,%v) = %v, want %v", tc.off, tc.cnt, tc.desc, got, tc.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(ctx, func(tx keys.Tx) error {
		if err := tx.IndexRemove("ix", "", "id001"); err != nil {
			return err
		}
		if c, _ := tx.IndexCount("ix"); c != n-1 {
			t.Errorf("count after remove = %d", c)
		}
		if err := tx.IndexDrop("ix"); err != nil {
			return err
		}
		if c, _ := tx.IndexCount("ix"); c != 0 {
			t.Errorf("count after drop = %d", c)
		}
		if got, _ := tx.IndexRange("other", 0, 10, false); fmt.Sprint(got) != "[x]" {
			t.Errorf("other index = %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSlowSubscriberLoses(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "keygate.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	release := make(chan struct{})
	lost := make(chan struct{}, 1)
	err = b.Subscribe(t.Context(), keys.Listener{
		Change: func(keys.Invalidation) { <-release },
		Gap: func(bool) {
			select {
			case lost <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = b.Update(context.Background(), func(tx keys.Tx) error {
		for i := range subscriberBuffer + 10 {
			tx.Notify(keys.Invalidation{UserID: fmt.Sprint(i)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("writer waited %v for a slow subscriber", d)
	}
	close(release)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("lost was not called")
	}
}

// TestExpiryIndexBackfill: keys stored before the expiry index existed (no
// entry in it, no meta flag) are found by ExpiringKeys, which indexes them
// once.
func TestExpiryIndexBackfill(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "keygate.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := keys.NewStore(b, keys.StoreOptions{})
	defer s.Close()
	ctx := context.Background()
	if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "t"); err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, keys.User{Name: "old", PrimaryTenant: "acme"}, "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: "acme", Role: keys.RoleMember}, "t"); err != nil {
		t.Fatal(err)
	}
	_, k := keys.NewAccessKey(keys.NewHasher(nil), u.ID, "acme", "legacy", time.Now().Add(48*time.Hour))
	if k, err = s.CreateKey(ctx, k, "t"); err != nil {
		t.Fatal(err)
	}
	// As stored by a keygate without the index.
	if err := b.Update(ctx, func(tx keys.Tx) error {
		return tx.IndexDrop("t:acme:keys:by:expiresAt")
	}); err != nil {
		t.Fatal(err)
	}
	page, err := s.ExpiringKeys(ctx, "acme", time.Now(), time.Now().Add(72*time.Hour), 1, 10)
	if err != nil || page.Total != 1 || page.Items[0].ID != k.ID {
		t.Fatalf("ExpiringKeys = %+v (%v), want the legacy key", page, err)
	}
	var n int
	if err := b.View(ctx, func(tx keys.Tx) (err error) {
		n, err = tx.IndexCount("t:acme:keys:by:expiresAt")
		return err
	}); err != nil || n != 1 {
		t.Fatalf("index has %d entries (%v), want 1", n, err)
	}
}
