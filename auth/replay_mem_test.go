package auth

import (
	"runtime"
	"testing"
	"time"
)

// TestMemoryReplayGuardMemory keeps ReplayEntryBytes (documented as the
// guard's cost per key) true: a full guard holds at most that per key.
func TestMemoryReplayGuardMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~25 MiB")
	}
	const n = 1 << 16
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := NewMemoryReplayGuard(n)
	for i := 0; i < n; i++ {
		if fresh, err := g.remember(rkey(i), time.Hour, testNow); !fresh || err != nil {
			t.Fatal(i, fresh, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.1f bytes per key", per)
	if per > ReplayEntryBytes {
		t.Fatalf("%.1f bytes per key, documented as at most %d", per, ReplayEntryBytes)
	}
	runtime.KeepAlive(g)
}
