// Command plot draws the benchmark results as SVG, from the JSON that
// `go run ./bench` writes, with no tool beyond Go:
//
//	go run ./bench/plot                                  both plots, default paths
//	go run ./bench/plot -standard FILE -soak FILE -out DIR
//
// throughput.svg: deliveries/s of each scenario beside the raw ceiling and
// the DESIGN goal (a third of the ceiling), with p50/p99 latency labels.
// soak-memory.svg: RSS of every process (and the dispatcher's Go heap in
// use) over the soak.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The subset of the bench's JSON that the plots read.
type report struct {
	Machine struct {
		CPUs     int    `json:"cpus"`
		CPUModel string `json:"cpu_model"`
	} `json:"machine"`
	StartedAt string `json:"started_at"`
	Ceiling   *struct {
		Throughput float64 `json:"throughput_per_s"`
	} `json:"ceiling"`
	Scenarios []struct {
		Name        string  `json:"name"`
		Dispatchers int     `json:"dispatchers"`
		Throughput  float64 `json:"throughput_per_s"`
		OfferedRate float64 `json:"offered_rate_per_s"`
		Latency     struct {
			P50 float64 `json:"p50"`
			P99 float64 `json:"p99"`
		} `json:"latency_ms"`
		Memory []memSample `json:"memory"`
	} `json:"scenarios"`
}

func main() {
	standard := flag.String("standard", filepath.Join("bench", "results", "standard.json"), "results of the standard scenarios")
	soak := flag.String("soak", filepath.Join("bench", "results", "soak.json"), "results of the soak")
	out := flag.String("out", filepath.Join("bench", "results"), "directory for the SVG files")
	flag.Parse()
	if err := run(*standard, *soak, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(standardPath, soakPath, out string) error {
	drew := 0
	if r, err := load(standardPath); err == nil {
		if err := write(filepath.Join(out, "throughput.svg"), throughputPlot(r)); err != nil {
			return err
		}
		drew++
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if r, err := load(soakPath); err == nil {
		for _, s := range r.Scenarios {
			if s.Name == "soak" && len(s.Memory) > 1 {
				if err := write(filepath.Join(out, "soak-memory.svg"), memoryPlot(r, s.Memory)); err != nil {
					return err
				}
				drew++
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if drew == 0 {
		return fmt.Errorf("nothing to plot: neither %s nor %s holds results (run go tool task bench / soak first)", standardPath, soakPath)
	}
	return nil
}

func load(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func write(path, svg string) error {
	if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", path)
	return nil
}

// svg accumulates drawing commands on a fixed canvas.
type svg struct {
	w, h float64
	b    strings.Builder
}

func newSVG(w, h float64) *svg {
	s := &svg{w: w, h: h}
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&s.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	return s
}

func (s *svg) text(x, y float64, anchor, style, t string) {
	fmt.Fprintf(&s.b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor, style, escape(t))
}

func (s *svg) line(x1, y1, x2, y2 float64, style string) {
	fmt.Fprintf(&s.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" %s/>`+"\n", x1, y1, x2, y2, style)
}

func (s *svg) rect(x, y, w, h float64, fill string) {
	fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, w, h, fill)
}

func (s *svg) polyline(pts [][2]float64, style string) {
	var b strings.Builder
	for _, p := range pts {
		fmt.Fprintf(&b, "%.1f,%.1f ", p[0], p[1])
	}
	fmt.Fprintf(&s.b, `<polyline fill="none" points="%s" %s/>`+"\n", strings.TrimSpace(b.String()), style)
}

func (s *svg) String() string { return s.b.String() + "</svg>\n" }

func escape(t string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(t)
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"}

func throughputPlot(r *report) string {
	type bar struct {
		label, sub string
		v          float64
		color      string
	}
	var bars []bar
	if r.Ceiling != nil {
		bars = append(bars, bar{"raw ceiling", "plain net/http", r.Ceiling.Throughput, "#bab0ac"})
	}
	for _, s := range r.Scenarios {
		sub := fmt.Sprintf("p50 %.1f / p99 %.1f ms", s.Latency.P50, s.Latency.P99)
		if strings.HasPrefix(s.Name, "max") {
			sub = "saturated"
		}
		color := palette[0]
		if s.OfferedRate > 0 {
			color = palette[2]
		}
		bars = append(bars, bar{fmt.Sprintf("%s (%d disp.)", s.Name, s.Dispatchers), sub, s.Throughput, color})
	}
	const w, h, left, right, top, bottom = 820.0, 440.0, 80.0, 20.0, 50.0, 90.0
	ymax := 0.0
	for _, b := range bars {
		ymax = max(ymax, b.v)
	}
	if r.Ceiling != nil {
		ymax = max(ymax, r.Ceiling.Throughput)
	}
	ymax = niceMax(ymax * 1.1)
	s := newSVG(w, h)
	s.text(w/2, 22, "middle", `font-size="15" font-weight="bold"`, "Deliveries per second (1 KiB events, healthy endpoints)")
	s.text(w/2, 38, "middle", `fill="#555"`, fmt.Sprintf("%d CPUs (%s), everything on one machine; %s", r.Machine.CPUs, r.Machine.CPUModel, r.StartedAt))
	plotH := h - top - bottom
	y := func(v float64) float64 { return top + plotH*(1-v/ymax) }
	for i := 0; i <= 5; i++ {
		v := ymax * float64(i) / 5
		s.line(left, y(v), w-right, y(v), `stroke="#ddd"`)
		s.text(left-6, y(v)+4, "end", "", fmt.Sprintf("%.0f", v))
	}
	slot := (w - left - right) / float64(len(bars))
	for i, b := range bars {
		x := left + slot*float64(i) + slot*0.15
		bw := slot * 0.7
		s.rect(x, y(b.v), bw, y(0)-y(b.v), b.color)
		s.text(x+bw/2, y(b.v)-5, "middle", `font-weight="bold"`, fmt.Sprintf("%.0f/s", b.v))
		s.text(x+bw/2, h-bottom+16, "middle", "", b.label)
		s.text(x+bw/2, h-bottom+31, "middle", `fill="#555" font-size="10"`, b.sub)
	}
	if r.Ceiling != nil {
		goal := r.Ceiling.Throughput / 3
		s.line(left, y(goal), w-right, y(goal), `stroke="#e15759" stroke-dasharray="6,4" stroke-width="1.5"`)
		s.text(w-right-4, y(goal)-5, "end", `fill="#e15759"`, fmt.Sprintf("DESIGN goal: ⅓ of the ceiling = %.0f/s", goal))
	}
	s.line(left, y(0), w-right, y(0), `stroke="#333"`)
	s.text(left, h-18, "start", `fill="#555" font-size="11"`, "blue: max throughput (bounded backlog); green: fixed rate (latency is publish → arrival)")
	return s.String()
}

type memSample = struct {
	Seconds      float64            `json:"t_s"`
	RSSMiB       map[string]float64 `json:"rss_mib"`
	HeapInuseMiB map[string]float64 `json:"heap_inuse_mib"`
}

type series struct {
	name string
	pts  [][2]float64 // minutes, MiB
}

// memoryPlot draws two panels on one time axis: the dispatcher's RSS and Go
// heap in use (the DESIGN goal is about them), then every process's RSS.
func memoryPlot(r *report, samples []memSample) string {
	collect := func(keep func(name string) bool) []*series {
		byName := map[string]*series{}
		add := func(name string, t, v float64) {
			if !keep(name) {
				return
			}
			if byName[name] == nil {
				byName[name] = &series{name: name}
			}
			byName[name].pts = append(byName[name].pts, [2]float64{t / 60, v})
		}
		for _, m := range samples {
			for n, v := range m.RSSMiB {
				add(n+" RSS", m.Seconds, v)
			}
			for n, v := range m.HeapInuseMiB {
				add(n+" Go heap in use", m.Seconds, v)
			}
		}
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		slices.Sort(names)
		out := make([]*series, len(names))
		for i, n := range names {
			out[i] = byName[n]
		}
		return out
	}
	dispatcher := collect(func(n string) bool { return strings.HasPrefix(n, "dispatcher") })
	rss := collect(func(n string) bool { return strings.HasSuffix(n, " RSS") })
	var tmax float64
	for _, sr := range rss {
		for _, p := range sr.pts {
			tmax = max(tmax, p[0])
		}
	}
	tmax = niceMax(tmax)
	const w, h = 900.0, 640.0
	s := newSVG(w, h)
	s.text(330, 22, "middle", `font-size="15" font-weight="bold"`, "Memory during the soak (fixed rate, 50 % of max throughput)")
	s.text(330, 38, "middle", `fill="#555"`, fmt.Sprintf("%d CPUs (%s); %s", r.Machine.CPUs, r.Machine.CPUModel, r.StartedAt))
	panel(s, dispatcher, tmax, 60, 270, "the dispatcher")
	panel(s, rss, tmax, 340, 590, "every process (RSS)")
	s.text(330, h-12, "middle", `fill="#555"`, "minutes")
	return s.String()
}

// panel draws series between y top and bottom, legend on the right.
func panel(s *svg, list []*series, tmax, top, bottom float64, title string) {
	const left, right = 70.0, 660.0
	var vmax float64
	for _, sr := range list {
		for _, p := range sr.pts {
			vmax = max(vmax, p[1])
		}
	}
	vmax = niceMax(vmax * 1.1)
	px := func(t float64) float64 { return left + (right-left)*t/tmax }
	py := func(v float64) float64 { return top + (bottom-top)*(1-v/vmax) }
	s.text(left, top-8, "start", `font-weight="bold"`, title)
	s.text(left-8, top-8, "end", `fill="#555"`, "MiB")
	for i := 0; i <= 4; i++ {
		v := vmax * float64(i) / 4
		s.line(left, py(v), right, py(v), `stroke="#ddd"`)
		s.text(left-6, py(v)+4, "end", "", fmt.Sprintf("%.0f", v))
	}
	for i := 0; i <= 5; i++ {
		t := tmax * float64(i) / 5
		s.text(px(t), bottom+16, "middle", "", fmt.Sprintf("%.0f", t))
	}
	s.line(left, py(0), right, py(0), `stroke="#333"`)
	for i, sr := range list {
		color := processColor(sr.name)
		style := fmt.Sprintf(`stroke="%s" stroke-width="1.8"`, color)
		if strings.HasSuffix(sr.name, "heap in use") {
			style += ` stroke-dasharray="5,3"`
		}
		pts := make([][2]float64, len(sr.pts))
		for j, p := range sr.pts {
			pts[j] = [2]float64{px(p[0]), py(p[1])}
		}
		s.polyline(pts, style)
		ly := top + 10 + float64(i)*18
		s.line(right+12, ly-4, right+34, ly-4, style)
		s.text(right+40, ly, "start", "", sr.name)
	}
}

// processColor keeps one color per process across panels.
func processColor(series string) string {
	process, _, _ := strings.Cut(series, " ")
	switch {
	case strings.HasPrefix(process, "dispatcher"):
		return palette[0]
	case process == "nats":
		return palette[3]
	case process == "receiver":
		return palette[4]
	case process == "loadgen":
		return palette[2]
	case process == "redis":
		return palette[6]
	}
	return palette[7]
}
