package portal

import "testing"

// TestAuditURL: audit lines never carry a webhook URL's query, where
// customers put tokens, nor its credentials.
func TestAuditURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.example.com/blazelock":                 "https://hooks.example.com/blazelock",
		"https://hooks.example.com/blazelock?token=s3cr3t":    "https://hooks.example.com/blazelock?…",
		"https://hooks.example.com/b?":                        "https://hooks.example.com/b?…",
		"https://user:pass@hooks.example.com:8443/a%20b#frag": "https://hooks.example.com:8443/a%20b",
		"https://[::1]:8443/x?a=1":                            "https://[::1]:8443/x?…",
		"::not a url":                                         "(unparsable)",
	} {
		if got := auditURL(raw); got != want {
			t.Errorf("auditURL(%q) = %q, want %q", raw, got, want)
		}
	}
}
