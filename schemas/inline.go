package schemas

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The published schema files are written for readers and third-party
// validators: shared $defs, $refs between files, and the envelope choosing
// the data schema with if/then. The validator pays for every such layer
// (each $ref or if/then branch it evaluates costs a few allocations), so the
// fast path compiles an equivalent form instead: every $ref is replaced by the
// schema it names, an event schema's own keywords are merged into the file
// scan definition, and the envelope leaves the choice of data schema to Go.
// TestFastPathMatchesPublishedSchemas and FuzzValidate check that both forms
// report the same violations.

// maxInlineDepth guards against a $ref cycle (the schemas have none).
const maxInlineDepth = 32

// annotationKeywords carry no assertion; they are dropped when merging.
var annotationKeywords = []string{"$schema", "$id", "$comment", "title", "description"}

// inlinedDocument returns the fully inlined form of the document at docURL.
func inlinedDocument(docs map[string]any, docURL string) (map[string]any, error) {
	v, err := inlineNode(docs, docs[docURL], docURL, 0)
	if err != nil {
		return nil, fmt.Errorf("inline %s: %w", docURL, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("inline %s: root is not an object", docURL)
	}
	delete(m, "$id")
	delete(m, "$defs")
	m["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	return m, nil
}

func inlineNode(docs map[string]any, node any, base string, depth int) (any, error) {
	if depth > maxInlineDepth {
		return nil, errors.New("$ref nesting too deep (a cycle?)")
	}
	switch n := node.(type) {
	case map[string]any:
		out := make(map[string]any, len(n))
		for k, v := range n {
			if k == "$ref" || k == "$defs" {
				continue
			}
			iv, err := inlineNode(docs, v, base, depth)
			if err != nil {
				return nil, err
			}
			out[k] = iv
		}
		ref, ok := n["$ref"].(string)
		if !ok {
			return out, nil
		}
		target, targetBase, err := resolveRef(docs, base, ref)
		if err != nil {
			return nil, err
		}
		inlined, err := inlineNode(docs, target, targetBase, depth+1)
		if err != nil {
			return nil, err
		}
		targetMap, ok := inlined.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q does not name an object schema", ref)
		}
		return mergeSchemas(targetMap, out)
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			iv, err := inlineNode(docs, v, base, depth)
			if err != nil {
				return nil, err
			}
			out[i] = iv
		}
		return out, nil
	default:
		return node, nil
	}
}

// resolveRef finds the node a $ref names; it returns the node and the URL of
// its document, against which the node's own $refs resolve.
func resolveRef(docs map[string]any, base, ref string) (any, string, error) {
	baseURL, err := url.Parse(base)
	if err != nil {
		return nil, "", fmt.Errorf("parse base %q: %w", base, err)
	}
	refURL, err := url.Parse(ref)
	if err != nil {
		return nil, "", fmt.Errorf("parse $ref %q: %w", ref, err)
	}
	abs := baseURL.ResolveReference(refURL)
	fragment := abs.Fragment
	abs.Fragment = ""
	docURL := abs.String()
	node, ok := docs[docURL]
	if !ok {
		return nil, "", fmt.Errorf("$ref %q: no document %s", ref, docURL)
	}
	if fragment == "" {
		return node, docURL, nil
	}
	if !strings.HasPrefix(fragment, "/") {
		return nil, "", fmt.Errorf("$ref %q: only JSON pointer fragments are supported", ref)
	}
	for _, tok := range strings.Split(fragment[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := node.(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("$ref %q: %q is not inside an object", ref, tok)
		}
		if node, ok = m[tok]; !ok {
			return nil, "", fmt.Errorf("$ref %q: no %q", ref, tok)
		}
	}
	return node, docURL, nil
}

// mergeSchemas returns one schema equivalent to allOf [a, b] for a $ref (a,
// its target) with sibling keywords (b), as the event schemas use it. The
// validator stops at a failed "type" before the other keywords of the same
// schema, so keywords can only be moved next to a's "type" when they apply
// to no other type: b may hold "required" and "properties" (object-only)
// and a must require an object. A property both define becomes allOf of
// the two, keeping each one's own short-circuit. Anything else is refused,
// and the tests would say so before a release.
func mergeSchemas(a, b map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	if len(b) == 0 {
		return out, nil
	}
	if a["type"] != "object" {
		return nil, errors.New("$ref with sibling keywords is only inlined onto an object schema")
	}
	for k, vb := range b {
		if slices.Contains(annotationKeywords, k) {
			continue
		}
		va, both := out[k]
		switch {
		case k != "required" && k != "properties":
			return nil, fmt.Errorf("$ref with sibling keyword %q cannot be inlined", k)
		case !both:
			out[k] = vb
		case k == "required":
			req := slices.Clone(va.([]any))
			for _, name := range vb.([]any) {
				if !slices.Contains(req, name) {
					req = append(req, name)
				}
			}
			out[k] = req
		case k == "properties":
			pa, pb := va.(map[string]any), vb.(map[string]any)
			props := make(map[string]any, len(pa)+len(pb))
			for name, s := range pa {
				props[name] = s
			}
			for name, sb := range pb {
				if sa, ok := props[name]; ok {
					props[name] = map[string]any{"allOf": []any{sa, sb}}
				} else {
					props[name] = sb
				}
			}
			out[k] = props
		}
	}
	return out, nil
}
