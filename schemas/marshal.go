package schemas

import "encoding/json"

// MarshalJSON writes findings as [] when the slice is nil: the schema
// (docs/contract.md, File scan object) requires an array, and a clean scan
// naturally has no findings, so a publisher should not have to remember to
// allocate an empty slice.
func (r ScanResult) MarshalJSON() ([]byte, error) {
	type plain ScanResult // same fields, no MarshalJSON: no recursion
	p := plain(r)
	if p.Findings == nil {
		p.Findings = []Finding{}
	}
	return json.Marshal(p)
}
