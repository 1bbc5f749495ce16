package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blazelock/webhooks/subscriber/verify"
)

// The README's Node.js and Python snippets are run, as written, against the
// test vector of docs/contract.md, Signature, and a set of refusals, and must
// agree with the Go package.

const (
	specSecret    = "whsec_test_fixture_secret"
	specTimestamp = "1773059696"
	specBody      = `{"event":"file_scan.submitted","integration_id":"0195a0c1-7e2f-7a10-8c3d-2b4e6f8a9c01","occurred_at":"2026-03-09T12:34:56.000Z","data":{"id":"019583d8-b2e4-7b8d-9d1f-6f4cb3d0b6f1","external_reference_id":"invoice-4711","status":"processing","execution_mode":"async","file_name":"invoice.pdf","file_size":245761,"submitted_at":"2026-03-09T12:34:56.000Z"}}`
	specSignature = "a36dc2e6d5b3e9362b5aed73a14d6590e2af2ea918393e315989752dc673f78c"
)

// snippetCase is one call of the snippet's verify function. Now nil means
// "use the snippet's default clock".
type snippetCase struct {
	Name      string `json:"name"`
	Secret    string `json:"secret"`
	Timestamp string `json:"timestamp"`
	Signature string `json:"signature"`
	Body      []byte `json:"body"` // base64 in JSON: the exact bytes
	Now       *int64 `json:"now"`
	// want is "" for accepted, else a substring of the refusal message.
	want string
}

func snippetCases() []snippetCase {
	at := func(n int64) *int64 { return &n }
	spec, _ := strconv.ParseInt(specTimestamp, 10, 64)
	body := []byte(specBody)
	tampered := bytes.Replace(body, []byte("245761"), []byte("245762"), 1)
	fresh := strconv.FormatInt(time.Now().Unix(), 10)
	return []snippetCase{
		{"spec vector", specSecret, specTimestamp, specSignature, body, at(spec), ""},
		{"spec vector, 300s later (boundary)", specSecret, specTimestamp, specSignature, body, at(spec + 300), ""},
		{"spec vector, 300s earlier (boundary)", specSecret, specTimestamp, specSignature, body, at(spec - 300), ""},
		{"uppercase hex", specSecret, specTimestamp, strings.ToUpper(specSignature), body, at(spec), ""},
		{"tampered body", specSecret, specTimestamp, specSignature, tampered, at(spec), "signature"},
		{"trailing newline added", specSecret, specTimestamp, specSignature, append(bytes.Clone(body), '\n'), at(spec), "signature"},
		{"wrong secret", "whsec_wrong", specTimestamp, specSignature, body, at(spec), "signature"},
		{"signature with a non-hex tail", specSecret, specTimestamp, specSignature[:60] + "zzzz", body, at(spec), "signature"},
		{"signature one digit short", specSecret, specTimestamp, specSignature[:63], body, at(spec), "signature"},
		{"stale", specSecret, specTimestamp, specSignature, body, at(spec + 301), "too old"},
		{"future", specSecret, specTimestamp, specSignature, body, at(spec - 301), "future"},
		{"malformed timestamp", specSecret, "1773059696.0", specSignature, body, at(spec), "malformed"},
		{"negative timestamp", specSecret, "-1773059696", specSignature, body, at(spec), "malformed"},
		{"missing signature", specSecret, specTimestamp, "", body, at(spec), "missing"},
		{"missing timestamp", specSecret, "", specSignature, body, at(spec), "missing"},
		{"fresh signature, default clock", specSecret, fresh, verify.Sign(specSecret, fresh, body), body, nil, ""},
		{"spec vector, default clock (long past)", specSecret, specTimestamp, specSignature, body, nil, "too old"},
	}
}

func TestReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	cases := snippetCases()

	// The Go package is the reference: the table must say what it says.
	for _, c := range cases {
		v := verify.Verifier{}
		if c.Now != nil {
			now := time.Unix(*c.Now, 0)
			v.Now = func() time.Time { return now }
		}
		err := v.VerifySignature(c.Secret, c.Timestamp, c.Signature, c.Body)
		if (err == nil) != (c.want == "") {
			t.Fatalf("case %q: the Go package says %v, the table expects %q", c.Name, err, c.want)
		}
	}
	input, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}

	languages := []struct {
		fence, interpreter, file string
		constantTime             string // timing is not observable here: check the call is there
		driver                   string
	}{
		{"javascript", "node", "snippet.js", "crypto.timingSafeEqual(", `
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
for (const c of cases) {
  const args = [c.secret, c.timestamp, c.signature, Buffer.from(c.body || "", "base64")];
  if (c.now !== null) args.push(c.now);
  let result = "";
  try { verifyBlazelockWebhook(...args); } catch (e) { result = "error: " + e.message; }
  console.log(JSON.stringify({ name: c.name, result }));
}
`},
		{"python", "python3", "snippet.py", "hmac.compare_digest(", `
import base64, json, sys
for c in json.load(sys.stdin):
    kwargs = {} if c["now"] is None else {"now": c["now"]}
    try:
        verify_blazelock_webhook(c["secret"], c["timestamp"], c["signature"], base64.b64decode(c["body"] or ""), **kwargs)
        result = ""
    except WebhookVerificationError as e:
        result = "error: " + str(e)
    print(json.dumps({"name": c["name"], "result": result}))
`},
	}
	for _, lang := range languages {
		t.Run(lang.interpreter, func(t *testing.T) {
			snippet := fencedBlock(t, readme, lang.fence)
			if !strings.Contains(snippet, lang.constantTime) {
				t.Errorf("the %s snippet does not compare with %s", lang.fence, lang.constantTime)
			}
			bin, err := exec.LookPath(lang.interpreter)
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is not installed; CI must run the README snippets", lang.interpreter)
				}
				t.Skipf("SKIPPED LOUDLY: %s is not installed, the README's %s snippet is untested", lang.interpreter, lang.fence)
			}
			script := filepath.Join(t.TempDir(), lang.file)
			if err := os.WriteFile(script, []byte(snippet+"\n"+lang.driver), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, script)
			cmd.Stdin = bytes.NewReader(input)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", lang.interpreter, script, err, stderr.String())
			}
			results := map[string]string{}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				var r struct{ Name, Result string }
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("unexpected output line %q", sc.Text())
				}
				results[r.Name] = r.Result
			}
			if len(results) != len(cases) {
				t.Fatalf("%d results for %d cases:\n%s", len(results), len(cases), out)
			}
			for _, c := range cases {
				got := results[c.Name]
				switch {
				case c.want == "" && got != "":
					t.Errorf("%s: refused (%s), want accepted", c.Name, got)
				case c.want != "" && !strings.Contains(got, c.want):
					t.Errorf("%s: got %q, want a refusal mentioning %q", c.Name, got, c.want)
				}
			}
		})
	}
}

// fencedBlock returns the one ```lang block of the README; there must be
// exactly one, so an edit cannot silently leave the tested snippet behind.
func fencedBlock(t *testing.T, readme []byte, lang string) string {
	t.Helper()
	var blocks []string
	var cur []string
	inside := false
	for _, line := range strings.Split(string(readme), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !inside && trimmed == "```"+lang:
			inside, cur = true, nil
		case inside && trimmed == "```":
			inside = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case inside:
			cur = append(cur, line)
		}
	}
	if len(blocks) != 1 {
		t.Fatalf("README.md has %d ```%s blocks, want exactly 1", len(blocks), lang)
	}
	return blocks[0]
}
