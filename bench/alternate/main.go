// Command alternate times commands in turn: one call of each, then one of
// each again, ROUNDS times, and prints each command's wall-time quartiles.
// Sub-millisecond differences between two builds of a program that starts
// once per message (sendmail) are lost in bench/sendmail.sh's block timing
// on a shared machine, where a block's p50 moves by a millisecond or more
// with the load of the moment; calls that alternate see the same moment.
//
//	alternate -rounds 300 -stdin msg 'bench/nop' 'A -f a@b c@d' 'B -f a@b c@d'
//
// Each command is split into words at spaces (no quoting); the file given
// with -stdin is its standard input. A command that exits non-zero stops
// the run. Δp50 is each command's p50 minus the first's; cpu p50 is the
// median of the command's own CPU time (user + system, from wait4), which
// the other programs on the machine disturb less than the wall time.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

func main() {
	rounds := flag.Int("rounds", 300, "how many times each command runs")
	stdin := flag.String("stdin", "", "file given to each command as its standard input")
	flag.Parse()
	cmds := flag.Args()
	if len(cmds) == 0 {
		fmt.Fprintln(os.Stderr, "usage: alternate [-rounds N] [-stdin FILE] COMMAND…")
		os.Exit(2)
	}
	wall := make([][]time.Duration, len(cmds))
	cpu := make([][]time.Duration, len(cmds))
	for r := 0; r < *rounds; r++ {
		for i, c := range cmds {
			w, u, err := timeOne(c, *stdin)
			if err != nil {
				fmt.Fprintf(os.Stderr, "alternate: %s: %v\n", c, err)
				os.Exit(1)
			}
			wall[i], cpu[i] = append(wall[i], w), append(cpu[i], u)
		}
	}
	var base time.Duration
	fmt.Printf("%d rounds; times in ms\n%8s %8s %8s %8s %8s  %s\n", *rounds, "p25", "p50", "p75", "Δp50", "cpu p50", "command")
	for i, c := range cmds {
		t, u := wall[i], cpu[i]
		slices.Sort(t)
		slices.Sort(u)
		p50 := t[len(t)/2]
		if i == 0 {
			base = p50
		}
		fmt.Printf("%8.3f %8.3f %8.3f %8.3f %8.3f  %s\n", ms(t[len(t)/4]), ms(p50), ms(t[3*len(t)/4]), ms(p50-base), ms(u[len(u)/2]), c)
	}
}

// timeOne runs command c once with the file stdin ("": none) as its
// standard input, given as the file itself (no pipe, no copying goroutine
// in this process): the time from just before the fork to the moment it
// has been reaped, and the CPU time it used.
func timeOne(c, stdin string) (wall, cpu time.Duration, err error) {
	w := strings.Fields(c)
	cmd := exec.Command(w[0], w[1:]...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	err = cmd.Run()
	wall = time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
