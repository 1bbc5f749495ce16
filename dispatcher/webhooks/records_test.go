package webhooks

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// records returns the KV side of a store over the test's bucket.
func (e *testEnv) records(t testing.TB) *records {
	t.Helper()
	box, err := newSecretBox(e.key)
	if err != nil {
		t.Fatal(err)
	}
	return &records{kv: e.kv, box: box}
}

// storedRecord returns the record KV holds for id, and its revision.
func (e *testEnv) storedRecord(t testing.TB, id string) (record, uint64) {
	t.Helper()
	entry, err := e.kv.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeRecord(entry.Value())
	if err != nil {
		t.Fatal(err)
	}
	return rec, entry.Revision()
}

// markEdit is an edit that appends mark to the record's URL, creating the
// record if there is none, so the final URL lists every edit that was
// written, in order.
func markEdit(mark string) func(cur *record) (record, error) {
	return func(cur *record) (record, error) {
		if cur == nil {
			return record{Format: recordFormat, URL: "start", Secret: "sealed"}, nil
		}
		next := *cur
		next.URL += "+" + mark
		return next, nil
	}
}

// TestUpdateConflict makes two writers read the same state of a record
// before either writes, so one of them must hit the conflict path: it
// retries on the other's result, and neither update is lost.
func TestUpdateConflict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exists bool // the record exists before the race (else both create)
	}{
		{"both replace", true},
		{"both create", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			r := env.records(t)
			ctx := context.Background()
			id := newID()
			if tc.exists {
				if _, err := r.update(ctx, id, markEdit("")); err != nil {
					t.Fatal(err)
				}
			}

			var bothRead sync.WaitGroup
			bothRead.Add(2)
			var mu sync.Mutex
			edits := 0
			revs := map[string]uint64{}
			var wg sync.WaitGroup
			for _, mark := range []string{"a", "b"} {
				first := true
				wg.Go(func() {
					rev, err := r.update(ctx, id, func(cur *record) (record, error) {
						mu.Lock()
						edits++
						mu.Unlock()
						if first { // hold the first attempt until the other writer has read too
							first = false
							bothRead.Done()
							bothRead.Wait()
						}
						if cur == nil {
							return record{Format: recordFormat, URL: "start+" + mark, Secret: "sealed"}, nil
						}
						return markEdit(mark)(cur)
					})
					if err != nil {
						t.Errorf("writer %s: %v", mark, err)
						return
					}
					mu.Lock()
					revs[mark] = rev
					mu.Unlock()
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			final, finalRev := env.storedRecord(t, id)
			if !strings.Contains(final.URL, "+a") || !strings.Contains(final.URL, "+b") {
				t.Fatalf("final URL %q: an update was lost", final.URL)
			}
			if edits != 3 {
				t.Fatalf("%d edits, want 3: two first attempts and one retry after the conflict", edits)
			}
			if revs["a"] == revs["b"] || max(revs["a"], revs["b"]) != finalRev {
				t.Fatalf("revisions a=%d b=%d, KV holds %d", revs["a"], revs["b"], finalRev)
			}
		})
	}
}

// TestUpdateGivesUp: when another writer changes the record between every
// read and write, update stops after maxWriteAttempts with ErrConflict and
// writes nothing.
func TestUpdateGivesUp(t *testing.T) {
	env := newTestEnv(t)
	r := env.records(t)
	ctx := context.Background()
	id := newID()
	if _, err := r.update(ctx, id, markEdit("")); err != nil {
		t.Fatal(err)
	}
	edits := 0
	_, err := r.update(ctx, id, func(cur *record) (record, error) {
		edits++
		if _, err := r.update(ctx, id, markEdit("other")); err != nil { // the interfering writer
			t.Fatal(err)
		}
		return markEdit("mine")(cur)
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("update under constant interference: %v, want ErrConflict", err)
	}
	if edits != maxWriteAttempts {
		t.Fatalf("%d attempts, want %d", edits, maxWriteAttempts)
	}
	final, _ := env.storedRecord(t, id)
	if strings.Contains(final.URL, "mine") || strings.Count(final.URL, "+other") != maxWriteAttempts {
		t.Fatalf("final URL %q: want exactly the %d interfering writes", final.URL, maxWriteAttempts)
	}
}

// TestDeleteUnreadableRecord: a delete does not decode the record, so one
// this dispatcher cannot read (here a newer format) can still be deleted.
func TestDeleteUnreadableRecord(t *testing.T) {
	env := newTestEnv(t)
	s := env.newStore(t, nil, "")
	ctx := context.Background()
	id := newID()
	if _, err := env.kv.Put(ctx, id, []byte(`{"format":2,"url":"https://a.example/hook"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a newer-format record: %v; want a decode error (else the test proves nothing)", err)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}
