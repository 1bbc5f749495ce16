package webhooks

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzKey is a fixed AES-256 key for the fuzz targets.
var fuzzKey = bytes.Repeat([]byte{7}, SecretKeyLen)

func fuzzCache(tb testing.TB) *cache {
	box, err := newSecretBox(fuzzKey)
	if err != nil {
		tb.Fatal(err)
	}
	return &cache{box: box}
}

// FuzzDecodeCached feeds decodeCached arbitrary Redis values: Redis is
// shared, can be flushed, restored from an old file or written by another
// version, so its bytes are not trusted to be well-formed. It must never
// panic, must answer a config, a tombstone or an error, and anything it
// returns as a config must be backed by the value: the URL is a piece of
// it and the secret decrypted under this cache's key and integration id.
func FuzzDecodeCached(f *testing.F) {
	c := fuzzCache(f)
	id := "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01"
	cfg := Webhook{IntegrationID: id, Settings: Settings{Enabled: true, URL: "https://hooks.example.com/in?x=1",
		Events: []string{"file_scan.completed"}}, Secret: "whsec_" + strings.Repeat("A", 43),
		CreatedAt: time.UnixMilli(1773059696000).UTC(), UpdatedAt: time.UnixMilli(1773059697000).UTC()}
	valid := "42:" + string(encodePayload(cfg, c.box.seal(id, cfg.Secret)))
	f.Add(id, valid)
	f.Add(id, "7:T")
	f.Add(id, "0:T")
	f.Add("0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c02", valid) // sealed for another integration
	f.Add(id, valid[:len(valid)-1])
	f.Add(id, valid[:30])
	f.Add(id, "42:C")
	f.Add(id, "42:C"+strings.Repeat("\x00", configHeaderLen)+"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
	f.Add(id, "18446744073709551616:T")
	f.Add(id, ":T")
	f.Add(id, "1:")
	f.Add(id, "")
	f.Add(id, "123456789012345678901:T")
	f.Fuzz(func(t *testing.T, id, v string) {
		got, found, err := c.decodeCached(id, v)
		switch {
		case err != nil:
			if found {
				t.Fatal("found with an error")
			}
		case !found:
			if got.Secret != "" || got.URL != "" {
				t.Fatalf("a tombstone with content %+v", got)
			}
		default:
			if !strings.Contains(v, got.URL) || got.IntegrationID != id || got.Secret == "" {
				t.Fatalf("config %+v not backed by the value %q", got, v)
			}
			rev, _, _ := strings.Cut(v, ":")
			if strconv.FormatUint(got.Revision, 10) != strings.TrimLeft(rev, "0") && got.Revision != 0 {
				t.Fatalf("revision %d from %q", got.Revision, rev)
			}
			for _, e := range got.Events {
				if eventBit(e) == 0 {
					t.Fatalf("unknown event %q", e)
				}
			}
		}
	})
}

// FuzzCachedEntryRoundTrip: every configuration the store can write to
// Redis reads back identical.
func FuzzCachedEntryRoundTrip(f *testing.F) {
	c := fuzzCache(f)
	f.Add(uint64(1), true, uint8(7), int64(1773059696000), int64(1773059697000), "https://hooks.example.com/in", "whsec_x")
	f.Add(uint64(0), false, uint8(0), int64(0), int64(-1), "", "")
	f.Add(uint64(1<<63), true, uint8(255), int64(-62135596800000), int64(253402300799999), strings.Repeat("é", 300), "\x00")
	f.Fuzz(func(t *testing.T, rev uint64, enabled bool, mask uint8, createdMs, updatedMs int64, url, secret string) {
		id := "0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01"
		want := Webhook{IntegrationID: id, Settings: Settings{Enabled: enabled, URL: url, Events: eventsFromMask(mask)},
			Secret: secret, Revision: rev, CreatedAt: time.UnixMilli(createdMs).UTC(), UpdatedAt: time.UnixMilli(updatedMs).UTC()}
		v := strconv.FormatUint(rev, 10) + ":" + string(encodePayload(want, c.box.seal(id, secret)))
		got, found, err := c.decodeCached(id, v)
		if err != nil || !found {
			t.Fatalf("decode of an encoded entry: found=%v err=%v", found, err)
		}
		if got.Enabled != want.Enabled || got.URL != want.URL || !slices.Equal(got.Events, want.Events) ||
			got.Secret != want.Secret || got.Revision != want.Revision ||
			!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Fatalf("round trip:\nwant %+v\ngot  %+v", want, got)
		}
	})
}
