// Command comparetable turns the echoload --json reports of one
// scripts/compare.sh run into a table: one row per server and cell, with
// msgs/s, MB/s, p99, p99.9 and server CPU per message, each beside its ratio
// to the base server (echod on io_uring) measured in the same cell of the
// same run, and server CPU per message also over a reference server's
// (--ref, the C io_uring server: the limit on the machine that ran it).
// It prints the table and writes it as Markdown and JSON.
//
//	comparetable --dir results/compare-X --servers "echod-uring c-uring stdlib" \
//	    --cells "1x64 100x64" --base echod-uring --ref c-uring --meta meta.txt
//
// Reports are read from DIR/cells/SERVER_CELL_rROUND.json; each figure is
// the median over the rounds without error, and a missing, failed or
// interrupted report is named in the row's note. The CPU ratios are given twice: the ratio of
// the two servers' medians, and the median of the rounds' own ratios (a
// round runs every server of a cell one after the other, so its ratio
// compares two servers measured minutes apart rather than across the whole
// run, which on a shared machine whose speed drifts is the steadier one). SERVER_CELL_rROUND.sys, if present, holds
// "SYSCALLS SECONDS": the server's syscalls counted by perf over the
// measured phase, which becomes syscalls per message.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// report is the part of echoload's --json output the table uses.
type report struct {
	Messages   int64   `json:"messages"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
	Latency    struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99_9"`
	} `json:"latency_us"`
	ErrorTotal  int64  `json:"error_total"`
	FirstError  string `json:"first_error"`
	Interrupted bool   `json:"interrupted"` // a signal cut the run short: its figures cover part of it
	CPU         *struct {
		ClientUSPerMsg       float64  `json:"client_us_per_msg"`
		ServerUSPerMsg       *float64 `json:"server_us_per_msg"`
		ServerUserUSPerMsg   *float64 `json:"server_user_us_per_msg"`
		ServerSwitchesPerMsg *float64 `json:"server_ctx_switches_per_msg"`
	} `json:"cpu"`
}

// Row is one server in one cell, as written to the JSON file.
type Row struct {
	Server         string   `json:"server"`
	Cell           string   `json:"cell"`
	OK             bool     `json:"ok"`
	Rounds         int      `json:"rounds"` // rounds without error, whose medians these are
	Note           string   `json:"note,omitempty"`
	MsgsPerSec     float64  `json:"msgs_per_sec"`
	MBPerSec       float64  `json:"mb_per_sec"`
	P50US          float64  `json:"p50_us"`
	P99US          float64  `json:"p99_us"`
	P999US         float64  `json:"p99_9_us"`
	ServerUSPerMsg *float64 `json:"server_cpu_us_per_msg"`
	// ServerUserUSPerMsg is the part of it in user mode: the server's own
	// code and runtime, the rest being the kernel's.
	ServerUserUSPerMsg *float64 `json:"server_user_cpu_us_per_msg"`
	ClientUSPerMsg     float64  `json:"client_cpu_us_per_msg"`
	// SyscallsPerMsg and SwitchesPerMsg are the server's, where measured.
	SyscallsPerMsg *float64 `json:"server_syscalls_per_msg"`
	SwitchesPerMsg *float64 `json:"server_ctx_switches_per_msg"`
	// Ratios to the base server in the same cell; nil where either is missing.
	MsgsRatio *float64 `json:"msgs_per_sec_ratio"`
	P99Ratio  *float64 `json:"p99_ratio"`
	CPURatio  *float64 `json:"server_cpu_ratio"`
	// CPURefRatio is server CPU per message over the --ref server's in the
	// same cell; nil where either is missing or no --ref was given.
	CPURefRatio *float64 `json:"server_cpu_ref_ratio,omitempty"`
	// CPURatioPaired and CPURefRatioPaired are the medians, over the rounds
	// both servers finished without error, of each round's ratio.
	CPURatioPaired    *float64 `json:"server_cpu_ratio_paired"`
	CPURefRatioPaired *float64 `json:"server_cpu_ref_ratio_paired,omitempty"`

	cpuByRound map[string]float64 // server CPU µs/msg of each round without error
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "comparetable: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("comparetable", flag.ContinueOnError)
	dir := fs.String("dir", "", "the run's results directory")
	servers := fs.String("servers", "", "servers, space separated, in table order")
	cells := fs.String("cells", "", "cells (CONNSxSIZE), space separated")
	base := fs.String("base", "echod-uring", "the server every ratio is relative to")
	ref := fs.String("ref", "", "a reference server: each server's CPU per message over its (optional)")
	meta := fs.String("meta", "", "file of 'key: value' lines printed above the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *servers == "" || *cells == "" {
		return errors.New("--dir, --servers and --cells are required")
	}
	var rows []Row
	for _, cell := range strings.Fields(*cells) {
		baseRow, _ := load(*dir, *base, cell)
		var refRow Row
		if *ref != "" {
			refRow, _ = load(*dir, *ref, cell)
		}
		for _, srv := range strings.Fields(*servers) {
			r, err := load(*dir, srv, cell)
			if err != nil {
				r = Row{Server: srv, Cell: cell, Note: err.Error()}
			}
			if r.OK && baseRow.OK {
				r.MsgsRatio = ratio(r.MsgsPerSec, baseRow.MsgsPerSec)
				r.P99Ratio = ratio(r.P99US, baseRow.P99US)
				if r.ServerUSPerMsg != nil && baseRow.ServerUSPerMsg != nil {
					r.CPURatio = ratio(*r.ServerUSPerMsg, *baseRow.ServerUSPerMsg)
				}
				r.CPURatioPaired = pairedRatio(r.cpuByRound, baseRow.cpuByRound)
			}
			if r.OK && refRow.OK && r.ServerUSPerMsg != nil && refRow.ServerUSPerMsg != nil {
				r.CPURefRatio = ratio(*r.ServerUSPerMsg, *refRow.ServerUSPerMsg)
				r.CPURefRatioPaired = pairedRatio(r.cpuByRound, refRow.cpuByRound)
			}
			rows = append(rows, r)
		}
	}
	var metaLines []string
	if *meta != "" {
		b, err := os.ReadFile(*meta)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				metaLines = append(metaLines, l)
			}
		}
	}
	md := markdown(rows, metaLines, *base, *ref)
	if _, err := io.WriteString(stdout, md); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "compare.md"), []byte(md), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(struct {
		Meta []string `json:"meta"`
		Base string   `json:"base"`
		Ref  string   `json:"ref,omitempty"`
		Rows []Row    `json:"rows"`
	}{metaLines, *base, *ref, rows}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*dir, "compare.json"), append(js, '\n'), 0o644)
}

// load reads every round of one server in one cell and keeps the median
// of each figure over the rounds that finished without error; a round with
// errors is named in the note.
func load(dir, server, cell string) (Row, error) {
	r := Row{Server: server, Cell: cell, cpuByRound: map[string]float64{}}
	files, _ := filepath.Glob(filepath.Join(dir, "cells", server+"_"+cell+"_r*.json"))
	if len(files) == 0 {
		return r, errors.New("no report (server skipped or failed to start)")
	}
	var msgs, mb, p50, p99, p999, client, srvCPU, srvUser, sw, sys []float64
	var notes []string
	for _, f := range files {
		round := strings.TrimSuffix(f[strings.LastIndex(f, "_r")+2:], ".json")
		b, err := os.ReadFile(f)
		if err != nil {
			return r, err
		}
		var rep report
		if err := json.Unmarshal(b, &rep); err != nil {
			notes = append(notes, fmt.Sprintf("round %s: unreadable report", round))
			continue
		}
		if rep.ErrorTotal > 0 || rep.Messages == 0 {
			notes = append(notes, fmt.Sprintf("round %s: %d errors: %s", round, rep.ErrorTotal, rep.FirstError))
			continue
		}
		if rep.Interrupted {
			notes = append(notes, fmt.Sprintf("round %s: interrupted", round))
			continue
		}
		msgs, mb = append(msgs, rep.MsgsPerSec), append(mb, rep.MBPerSec)
		p50, p99 = append(p50, rep.Latency.P50), append(p99, rep.Latency.P99)
		p999 = append(p999, rep.Latency.P999)
		if c := rep.CPU; c != nil {
			client = append(client, c.ClientUSPerMsg)
			if c.ServerUSPerMsg != nil {
				srvCPU = append(srvCPU, *c.ServerUSPerMsg)
				r.cpuByRound[round] = *c.ServerUSPerMsg
			}
			if c.ServerUserUSPerMsg != nil {
				srvUser = append(srvUser, *c.ServerUserUSPerMsg)
			}
			if c.ServerSwitchesPerMsg != nil {
				sw = append(sw, *c.ServerSwitchesPerMsg)
			}
		}
		if b, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".sys"); err == nil {
			var n, secs float64
			if _, err := fmt.Sscan(string(b), &n, &secs); err == nil && rep.MsgsPerSec > 0 && secs > 0 {
				sys = append(sys, n/(rep.MsgsPerSec*secs))
			}
		}
	}
	r.Note = strings.Join(notes, "; ")
	r.Rounds = len(msgs)
	if len(msgs) == 0 {
		return r, nil
	}
	r.OK = true
	r.MsgsPerSec, r.MBPerSec = *median(msgs), *median(mb)
	r.P50US, r.P99US, r.P999US = *median(p50), *median(p99), *median(p999)
	if m := median(client); m != nil {
		r.ClientUSPerMsg = *m
	}
	r.ServerUSPerMsg, r.SwitchesPerMsg, r.SyscallsPerMsg = median(srvCPU), median(sw), median(sys)
	r.ServerUserUSPerMsg = median(srvUser)
	return r, nil
}

// median is nil for no values.
func median(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &m
}

// pairedRatio is the median, over the rounds in both a and b, of a's
// figure over b's in that round; nil where they share no round.
func pairedRatio(a, b map[string]float64) *float64 {
	var rs []float64
	for round, x := range a {
		if y, ok := b[round]; ok && y != 0 {
			rs = append(rs, x/y)
		}
	}
	return median(rs)
}

func ratio(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	v := a / b
	return &v
}

func markdown(rows []Row, meta []string, base, ref string) string {
	var b strings.Builder
	for _, l := range meta {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	fmt.Fprintf(&b, "- ratios (×) are each server's figure over %s's in the same cell of this run; "+
		"for msgs/s higher is better, for p99 and CPU µs/msg lower is better; "+
		"a CPU ratio in brackets is the median of the rounds' own ratios (each round's servers run one after the other)\n", base)
	refCol, refSep := "", ""
	if ref != "" {
		fmt.Fprintf(&b, "- CPU × %s is server CPU µs/msg over %s's in the same cell (%s is the limit on this machine)\n", ref, ref, ref)
		refCol, refSep = fmt.Sprintf(" CPU × %s |", ref), "--:|"
	}
	b.WriteString("\n| cell (conns × bytes) | server | msgs/s | × | MB/s | p99 µs | × | p99.9 µs | server CPU µs/msg | × |" + refCol +
		" of it user µs/msg | server syscalls/msg | server ctx switches/msg | client CPU µs/msg | note |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|" + refSep + "--:|--:|--:|--:|---|\n")
	x := func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%.2f", *p)
	}
	// xp shows a ratio of medians with the median of the rounds' ratios
	// beside it, where there are rounds to pair.
	xp := func(p, paired *float64) string {
		if p == nil || paired == nil {
			return x(p)
		}
		return fmt.Sprintf("%.2f (%.2f)", *p, *paired)
	}
	for _, r := range rows {
		refVal := ""
		if ref != "" {
			refVal = " " + xp(r.CPURefRatio, r.CPURefRatioPaired) + " |"
		}
		if !r.OK {
			dashes := strings.Repeat(" – |", 12+strings.Count(refSep, "|"))
			fmt.Fprintf(&b, "| %s | %s |%s %s |\n", cellName(r.Cell), r.Server, dashes, r.Note)
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %.1f | %.0f | %s | %.0f | %s | %s |%s %s | %s | %s | %.2f | %s |\n",
			cellName(r.Cell), r.Server, r.MsgsPerSec, x(r.MsgsRatio), r.MBPerSec, r.P99US, x(r.P99Ratio), r.P999US,
			x(r.ServerUSPerMsg), xp(r.CPURatio, r.CPURatioPaired), refVal, x(r.ServerUserUSPerMsg), x(r.SyscallsPerMsg), x(r.SwitchesPerMsg), r.ClientUSPerMsg, r.Note)
	}
	return b.String()
}

// cellName turns "50x16384" into "50 × 16384".
func cellName(c string) string { return strings.Replace(c, "x", " × ", 1) }
