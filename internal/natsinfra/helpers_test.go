package natsinfra_test

import (
	"encoding/json"
	"strconv"
)

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func itoa(u uint64) string { return strconv.FormatUint(u, 10) }
