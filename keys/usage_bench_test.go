package keys_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// benchUsers is how many users the usage benchmarks spread their requests
// over, as in the 10,000-user load profile.
const benchUsers = 10000

// benchIDs returns n user ids and n key ids.
func benchIDs(n int) (users, keyIDs []string) {
	users = make([]string, n)
	keyIDs = make([]string, n)
	for i := range n {
		users[i] = "user-" + strconv.Itoa(i)
		keyIDs[i] = "key-" + strconv.Itoa(i)
	}
	return users, keyIDs
}

// benchUsage runs op serially and in parallel, each iteration on the next of
// benchUsers users at a later time (as requests do), after one warm-up round
// so that every user's entry exists (the common case: the user was already
// seen in this flush interval).
func benchUsage(b *testing.B, op func(i int, at time.Time)) {
	at := time.Now()
	for i := range benchUsers {
		op(i, at)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i, t := 0, at
		for b.Loop() {
			t = t.Add(time.Microsecond)
			op(i, t)
			if i++; i == benchUsers {
				i = 0
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i, t := int(next.Add(benchUsers/7))%benchUsers, at
			for pb.Next() {
				t = t.Add(time.Microsecond)
				op(i, t)
				if i++; i == benchUsers {
					i = 0
				}
			}
		})
	})
}

func BenchmarkUsageRecorderRecord(b *testing.B) {
	users, keyIDs := benchIDs(benchUsers)
	u := keys.NewUsageRecorder(nil, time.Minute)
	benchUsage(b, func(i int, at time.Time) { u.Record(users[i], keyIDs[i], "", at) })
}

func BenchmarkUsageRecorderRecordSecret(b *testing.B) {
	users, keyIDs := benchIDs(benchUsers)
	u := keys.NewUsageRecorder(nil, time.Minute)
	benchUsage(b, func(i int, at time.Time) { u.Record(users[i], "", keyIDs[i], at) })
}

func BenchmarkUsageRecorderRecordLogin(b *testing.B) {
	users, _ := benchIDs(benchUsers)
	u := keys.NewUsageRecorder(nil, time.Minute)
	benchUsage(b, func(i int, at time.Time) { u.RecordLogin(users[i], "acme", at) })
}

func BenchmarkUsageCounterCount(b *testing.B) {
	users, _ := benchIDs(benchUsers)
	c := keys.NewUsageCounter(nil, time.Minute)
	benchUsage(b, func(i int, at time.Time) { c.Count("acme", users[i], keys.UsageAllowed, at) })
}

// BenchmarkUsageRecorderRecordNew records uses of credentials not seen before
// (1,000,000 users, each once), the cost of the map inserts: amortized
// O(1), not a copy of the map per insert.
func BenchmarkUsageRecorderRecordNew(b *testing.B) {
	users, keyIDs := benchIDs(1000000)
	u := keys.NewUsageRecorder(nil, time.Minute)
	at := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		u.Record(users[i], keyIDs[i], "", at)
		if i++; i == len(users) {
			i = 0
			u = keys.NewUsageRecorder(nil, time.Minute)
		}
	}
}
