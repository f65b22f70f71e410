// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Report files in the --out directory.
const (
	ReportMarkdown = "report.md"
	ReportJSON     = "results.json"
)

// WriteReport writes report.md, results.json and one or two SVG charts per scenario
// (<scenario>-pps.svg, <scenario>-loss.svg) into dir.
func WriteReport(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ReportJSON), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	var md strings.Builder
	m := rep.Machine
	fmt.Fprintf(&md, "# xmirror bench\n\n")
	fmt.Fprintf(&md, "- Machine: %s, %d cores, %d MiB, kernel %s, %s\n", m.CPU, m.Cores, m.MemoryMB, m.Kernel, m.Go)
	fmt.Fprintf(&md, "- Load average (1, 5, 15 min) at start: %s; at end: %s (other work on the machine moves every number)\n", m.LoadStart, m.LoadEnd)
	fmt.Fprintf(&md, "- Run: %s, %.0f s; %d × %.0f s trials (medians), frames %d B on the wire, %d flows, quick=%v\n",
		rep.Started.Format("2006-01-02 15:04 UTC"), rep.Seconds, rep.Options.Reps, rep.Options.TrialSecs,
		rep.Options.FrameBytes, rep.Options.Flows, rep.Options.Quick)
	if rep.Options.Command != "" {
		fmt.Fprintf(&md, "- Command: `%s`\n", rep.Options.Command)
	}
	fmt.Fprintf(&md, "\nEvery figure is given as a ratio against the ceiling measured in the same run, "+
		"with the absolute number beside it: numbers on shared machines move by ±20%% between runs, ratios much less.\n")
	for i := range rep.Scenarios {
		sc := &rep.Scenarios[i]
		fmt.Fprintf(&md, "\n## %s — %s\n\n", sc.Name, sc.Title)
		if sc.Skipped != "" {
			fmt.Fprintf(&md, "Skipped: %s\n", sc.Skipped)
			continue
		}
		fmt.Fprintf(&md, "%s\n\n", sc.About)
		md.WriteString(markdownTable(sc))
		for _, n := range sc.Notes {
			fmt.Fprintf(&md, "\n%s\n", n)
		}
		if len(sc.Goals) > 0 {
			md.WriteString("\nGoals:\n\n")
			for _, g := range sc.Goals {
				md.WriteString(goalLine(g) + "\n")
			}
		}
		if svg := barChart(sc); svg != "" {
			name := sc.Name + "-pps.svg"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
				return fmt.Errorf("write chart: %w", err)
			}
			fmt.Fprintf(&md, "\n![%s](%s)\n", sc.Name+" per system", name)
		}
		if svg := lossChart(sc); svg != "" {
			name := sc.Name + "-loss.svg"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
				return fmt.Errorf("write chart: %w", err)
			}
			fmt.Fprintf(&md, "\n![%s](%s)\n", sc.Name+" loss versus offered rate", name)
		}
		for _, s := range sc.Systems {
			if len(s.Errors) > 0 {
				fmt.Fprintf(&md, "\n%s had failed trials: %s\n", s.Name, strings.Join(s.Errors, "; "))
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ReportMarkdown), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func markdownTable(sc *ScenarioResult) string {
	cols := tableColumns(sc)
	var b strings.Builder
	b.WriteString("| system | kind | vs " + sc.Ceiling + " |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %s |", metricUnits[c].title)
	}
	b.WriteString("\n|---|---|---:|")
	for range cols {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, s := range sc.Systems {
		if s.Skipped != "" {
			fmt.Fprintf(&b, "| %s | %s | skipped: %s |", s.Name, s.Kind, strings.ReplaceAll(s.Skipped, "|", "/"))
			for range cols {
				b.WriteString(" |")
			}
			b.WriteString("\n")
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s |", s.Name, s.Kind, ratioCell(&s))
		for _, c := range cols {
			if v, ok := s.Metrics[metricUnits[c].name]; ok {
				fmt.Fprintf(&b, " %s |", formatValue(v, metricUnits[c].unit))
			} else {
				b.WriteString(" - |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// kindColor gives each kind of system one color in every chart.
func kindColor(kind string) string {
	switch kind {
	case KindCeiling:
		return "#7f8c8d"
	case KindXmirror:
		return "#2e86de"
	case KindBaseline:
		return "#27ae60"
	case KindReference:
		return "#8e44ad"
	default:
		return "#e67e22"
	}
}

func primaryTitle(sc *ScenarioResult) (string, string) {
	for _, mu := range metricUnits {
		if mu.name == sc.Primary {
			return mu.title, mu.unit
		}
	}
	return sc.Primary, ""
}

// barChart draws the primary metric per system as horizontal bars, each labelled
// with its absolute value and its ratio to the ceiling.
func barChart(sc *ScenarioResult) string {
	type bar struct {
		name, kind, label string
		v                 float64
	}
	var bars []bar
	var top float64
	_, unit := primaryTitle(sc)
	for _, s := range sc.Systems {
		if s.Skipped != "" {
			bars = append(bars, bar{name: s.Name, kind: s.Kind, label: "skipped"})
			continue
		}
		v, ok := s.Metrics[sc.Primary]
		if !ok {
			continue
		}
		lbl := formatValue(v, unit)
		if s.Ratio != nil {
			lbl += fmt.Sprintf("  (%.2f× %s)", *s.Ratio, sc.Ceiling)
		}
		bars = append(bars, bar{s.Name, s.Kind, lbl, v})
		top = math.Max(top, v)
	}
	if len(bars) == 0 || top <= 0 {
		return ""
	}
	const (
		left, barW, rowH, width = 230, 400, 34, 900
	)
	title, _ := primaryTitle(sc)
	height := 60 + rowH*len(bars) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="24" font-size="16" font-weight="bold">%s: %s per system</text>`+"\n", html.EscapeString(sc.Name), html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="10" y="44" fill="#555">%s</text>`+"\n", html.EscapeString(sc.Title))
	for i, br := range bars {
		y := 60 + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+18, html.EscapeString(br.name))
		w := int(math.Round(br.v / top * barW))
		if br.label != "skipped" && w < 1 {
			w = 1
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y+4, w, rowH-10, kindColor(br.kind))
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+w+6, y+18, html.EscapeString(br.label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// lossChart draws loss (%) against offered rate, one line per system.
func lossChart(sc *ScenarioResult) string {
	var maxX, maxLoss float64
	n := 0
	for _, s := range sc.Systems {
		for _, p := range s.Curve {
			maxX = math.Max(maxX, p.OfferedPPS)
			maxLoss = math.Max(maxLoss, p.LossPct)
			n++
		}
	}
	if n == 0 || maxX <= 0 {
		return ""
	}
	// The loss axis ends at the first of these that holds every point: losses of a
	// fraction of a percent are the interesting ones and vanish on a 0..100% axis.
	topLoss := 100.0
	for _, top := range []float64{1, 5, 10, 25, 50} {
		if maxLoss <= top {
			topLoss = top
			break
		}
	}
	const (
		x0, y0, w, h = 70, 50, 560, 300
	)
	palette := []string{"#7f8c8d", "#2e86de", "#e67e22", "#8e44ad", "#27ae60", "#c0392b"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="900" height="%d" font-family="sans-serif" font-size="13">`+"\n", y0+h+60)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="10" y="24" font-size="16" font-weight="bold">%s: loss versus offered rate</text>`+"\n", html.EscapeString(sc.Name))
	// Axes and grid: loss 0..topLoss, rate 0..maxX.
	for i := 0; i <= 4; i++ {
		y := y0 + h - i*h/4
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ddd"/>`+"\n", x0, y, x0+w, y)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%g%%</text>`+"\n", x0-6, y+4, topLoss*float64(i)/4)
		x := x0 + i*w/4
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", x, y0+h+18, formatPPS(maxX*float64(i)/4))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0+h, x0+w, y0+h)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, x0, y0+h)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">offered rate</text>`+"\n", x0+w/2, y0+h+40)
	fmt.Fprintf(&b, `<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">loss</text>`+"\n", y0+h/2, y0+h/2)
	li := 0
	for i, s := range sc.Systems {
		if len(s.Curve) == 0 {
			continue
		}
		c := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Curve {
			x := float64(x0) + p.OfferedPPS/maxX*float64(w)
			y := float64(y0+h) - math.Min(p.LossPct, topLoss)/topLoss*float64(h)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x, y, c)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), c)
		ly := y0 + 10 + li*22
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/>`+"\n", x0+w+20, ly-4, c)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x0+w+40, ly+2, html.EscapeString(s.Name))
		li++
	}
	b.WriteString("</svg>\n")
	return b.String()
}
