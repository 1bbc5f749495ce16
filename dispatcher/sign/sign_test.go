package sign

import (
	"bytes"
	"crypto/fips140"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// specBody is the test vector body of docs/contract.md, Signature, byte for byte.
const specBody = `{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"processing","execution_mode":"async","file_name":"invoice.pdf","file_size":245761,"submitted_at":"2026-03-09T12:34:56.000Z"}}`

// reference is the textbook construction, written independently of the code
// under test, to cross-check cases that have no published vector.
func reference(secret string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(timestamp, 10) + "." + string(body)))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSignature(t *testing.T) {
	tests := []struct {
		name      string
		secret    string
		timestamp int64
		body      string
		want      string
	}{
		{
			name:      "contract test vector",
			secret:    "whsec_test_fixture_secret",
			timestamp: 1773059696,
			body:      specBody,
			want:      "a36dc2e6d5b3e9362b5aed73a14d6590e2af2ea918393e315989752dc673f78c",
		},
		// Fixed outputs computed once with `printf '%s' "<ts>.<body>" |
		// openssl dgst -sha256 -hmac "<secret>"`, an implementation
		// independent of Go, so a wrong message layout cannot pass.
		{name: "empty body", secret: "whsec_test_fixture_secret", timestamp: 1773059696, body: "",
			want: "bec33b9f648ab09e5ca25581ff0d90703b2d76e28181d0c6e8820c4ead170077"},
		{name: "timestamp zero", secret: "k", timestamp: 0, body: "{}",
			want: "c847cd2c51e393092098d6126ed5aeb9ddbe946df3a0b7cb9e9a8a34fadb2cc7"},
		{name: "key longer than a block is hashed first", secret: strings.Repeat("k", 100), timestamp: 1773059696, body: "{}",
			want: "24454bb8be72b054f6b213ad7ed173cf8a9ad1a285ef17f763feaee543229b2f"},
		{name: "key exactly one block, negative timestamp", secret: strings.Repeat("k", 64), timestamp: -1, body: "x",
			want: "833c46df0ae56dbd0dd7ee6d27ac310370738cf93ac1ee0ca13801b52b29ff69"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Signature(tt.secret, tt.timestamp, []byte(tt.body))
			if got != tt.want {
				t.Fatalf("Signature = %s, want %s", got, tt.want)
			}
			if app := AppendSignature([]byte("sha256="), tt.secret, tt.timestamp, []byte(tt.body)); string(app) != "sha256="+tt.want {
				t.Fatalf("AppendSignature = %s, want prefix kept and %s appended", app, tt.want)
			}
		})
	}
}

// TestSignatureMatchesReference cross-checks inputs that stress the layout:
// long keys (hashed by HMAC first), negative and extreme timestamps, binary
// bodies and bodies containing the separator.
func TestSignatureMatchesReference(t *testing.T) {
	long := strings.Repeat("s", 200)
	bin := []byte{0, 1, 2, 0xff, '.', '\n'}
	tests := []struct {
		secret    string
		timestamp int64
		body      []byte
	}{
		{"whsec_x", 1, []byte("a")},
		{long, 1773059696, []byte(specBody)},
		{"", 1773059696, []byte(specBody)},
		{"whsec_x", -1, bin},
		{"whsec_x", 9223372036854775807, bin},
		{"whsec_x", -9223372036854775808, []byte("1.2.3")},
		{"whsec_x", 12, []byte(strings.Repeat("x", 1<<16))},
		{strings.Repeat("k", 63), 5, nil},
		{strings.Repeat("k", 65), 5, nil},
		{string([]byte{0xaa, 0, 0xff}), 5, bin},
	}
	for i, tt := range tests {
		if got, want := Signature(tt.secret, tt.timestamp, tt.body), reference(tt.secret, tt.timestamp, tt.body); got != want {
			t.Errorf("case %d: Signature = %s, want %s", i, got, want)
		}
	}
	// A different secret, timestamp or body changes the signature.
	base := Signature("whsec_a", 10, []byte("b"))
	for _, other := range []string{Signature("whsec_A", 10, []byte("b")), Signature("whsec_a", 11, []byte("b")), Signature("whsec_a", 10, []byte("c")), Signature("whsec_a", 1, []byte("0b"))} {
		if other == base {
			t.Errorf("signature did not change with its input: %s", other)
		}
	}
}

// TestSignatureConcurrent runs many signers at once: the pooled hashing state
// must never be shared between two signatures (run with -race).
func TestSignatureConcurrent(t *testing.T) {
	const workers, rounds = 8, 200
	errs := make(chan string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			secret := strings.Repeat(string(rune('a'+w)), 10+w*10) // some keys exceed a block
			body := []byte(strings.Repeat(strconv.Itoa(w), 100*w))
			want := reference(secret, int64(w), body)
			for range rounds {
				if got := Signature(secret, int64(w), body); got != want {
					errs <- fmt.Sprintf("worker %d: got %s, want %s", w, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestAppendSignatureAllocations(t *testing.T) {
	if fips140.Enabled() || raceEnabled {
		t.Skip("FIPS mode uses crypto/hmac, and the race detector makes sync.Pool drop items on purpose")
	}
	body := bytes.Repeat([]byte("x"), 1024)
	dst := make([]byte, 0, SignatureLen)
	AppendSignature(dst, "whsec_x", 1, body) // warm the pool
	if n := testing.AllocsPerRun(100, func() { dst = AppendSignature(dst[:0], "whsec_x", 1773059696, body) }); n != 0 {
		t.Fatalf("AppendSignature allocates %v times per call, want 0", n)
	}
}

// FuzzSignature cross-checks the pooled HMAC against crypto/hmac.
func FuzzSignature(f *testing.F) {
	f.Add("whsec_test_fixture_secret", int64(1773059696), []byte(specBody))
	f.Add(strings.Repeat("k", 64), int64(-1), []byte("x"))
	f.Add(strings.Repeat("k", 65), int64(0), []byte{})
	f.Fuzz(func(t *testing.T, secret string, timestamp int64, body []byte) {
		if got, want := Signature(secret, timestamp, body), reference(secret, timestamp, body); got != want {
			t.Fatalf("Signature(%q, %d, %q) = %s, crypto/hmac says %s", secret, timestamp, body, got, want)
		}
	})
}

func TestAppendSignatureDoesNotTouchSpareCapacity(t *testing.T) {
	dst := make([]byte, 2, 2+SignatureLen+4)
	copy(dst, "ab")
	full := dst[:cap(dst)]
	copy(full[2+SignatureLen:], "TAIL")
	out := AppendSignature(dst, "whsec_test_fixture_secret", 1773059696, []byte(specBody))
	if len(out) != 2+SignatureLen || string(out[:2]) != "ab" {
		t.Fatalf("AppendSignature = %q", out)
	}
	if string(full[2+SignatureLen:]) != "TAIL" {
		t.Fatalf("AppendSignature wrote past the signature: %q", full[2+SignatureLen:])
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 64 {
		s, err := NewSecret()
		if err != nil {
			t.Fatalf("NewSecret: %v", err)
		}
		if SecretLen != 49 || len(s) != SecretLen || !strings.HasPrefix(s, "whsec_") {
			t.Fatalf("NewSecret = %q (len %d)", s, len(s))
		}
		if !ValidSecret(s) {
			t.Fatalf("ValidSecret(%q) = false for a fresh secret", s)
		}
		if seen[s] {
			t.Fatalf("NewSecret repeated %q", s)
		}
		seen[s] = true
	}
}

func TestValidSecret(t *testing.T) {
	good := "whsec_" + strings.Repeat("A", 42) + "A" // 32 zero bytes
	tests := []struct {
		s    string
		want bool
	}{
		{good, true},
		{"whsec_" + strings.Repeat("-", 42) + "w", true}, // 0xfb... bytes, last char low bits zero
		{"whsec_" + strings.Repeat("_", 42) + "8", true},
		{"", false},
		{"whsec_", false},
		{"whsec_test_fixture_secret", false},                 // the contract's fixture is a key, not a generated secret
		{"WHSEC_" + strings.Repeat("A", 43), false},          // prefix is case-sensitive
		{"whsec_" + strings.Repeat("A", 42), false},          // too short
		{"whsec_" + strings.Repeat("A", 44), false},          // too long
		{"whsec_" + strings.Repeat("A", 42) + "B", false},    // non-zero padding bits: a second spelling
		{"whsec_" + strings.Repeat("A", 42) + "=", false},    // padding
		{"whsec_" + strings.Repeat("+", 43), false},          // standard, not URL, alphabet
		{"whsec_" + strings.Repeat("/", 43), false},          //
		{"whsec_" + strings.Repeat("A", 41) + "\nA", false},  // decoder would skip the newline
		{"whsec_" + strings.Repeat("A", 41) + " A", false},   //
		{"xhsec_" + strings.Repeat("A", 43), false},          //
		{"whsec_" + strings.Repeat("A", 42) + "\xc3", false}, // non-ASCII
	}
	for _, tt := range tests {
		if got := ValidSecret(tt.s); got != tt.want {
			t.Errorf("ValidSecret(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func BenchmarkSignature(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	secret, err := NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = Signature(secret, 1773059696, body)
	}
}

func BenchmarkAppendSignature(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	secret, err := NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, SignatureLen)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		dst = AppendSignature(dst[:0], secret, 1773059696, body)
	}
}
