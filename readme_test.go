package keygate_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// TestREADME runs the README's ```sh blocks, in order, in one bash session
// against a keygate started from Caddyfile.example, as a reader who pastes
// them would: the README cannot drift from what keygate does.
//
// The conventions (README "Contributing to this README" says the same):
//   - ```sh blocks run, one line (with its \ continuations) at a time;
//     ```console blocks are shown, never run (servers, builds, other hosts).
//   - The example's ports (8080, 9080, 8081, 2019) are replaced with free
//     ones and `go run ./cmd/keygate` with the test binary.
//   - A line `NAME=<prefix>...   # <hint>` is a value the reader copies
//     from an answer above: with a prefix (kg_, eyJ) the test takes the
//     latest token that starts with it, else the dotted JSON path in the
//     hint (data.id) from the latest answer that has it.
//   - Every command must exit 0, and every HTTP answer must be below 400
//     unless its status appears in the command or in a comment line of the
//     same paragraph above it (e.g. "keygate answers 401").
func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and runs the README (-short)")
	}
	for _, tool := range []string{"bash", "curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the README test needs %s", tool)
			}
			t.Skipf("the README test needs %s", tool)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := shellBlocks(string(readme))
	if len(blocks) < 4 {
		t.Fatalf("README has %d sh blocks; the walkthroughs went missing?", len(blocks))
	}
	example, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}

	ports := map[string]int{}
	for _, p := range []string{"8080", "8081", "9080"} {
		ports[p] = testcaddy.FreePort(t)
	}
	cfg := strings.Replace(string(example), "admin localhost:2019", "admin {admin}", 1)
	if cfg == string(example) {
		t.Fatal("Caddyfile.example no longer says `admin localhost:2019`; update TestREADME")
	}
	for from, to := range ports {
		cfg = strings.ReplaceAll(cfg, ":"+from, ":"+strconv.Itoa(to))
	}
	data := t.TempDir()
	srv := testcaddy.Start(t, cfg, testcaddy.Options{DataHome: data, Wait: []string{
		fmt.Sprintf("http://127.0.0.1:%d/", ports["8080"]),
		fmt.Sprintf("http://127.0.0.1:%d/", ports["8081"]),
	}})
	_, adminPort, _ := strings.Cut(srv.AdminAddr, ":")
	ports["2019"], _ = strconv.Atoi(adminPort)

	// The reader's working directory: the checkout, here a copy of the
	// example config with the test's ports.
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "Caddyfile.example"), []byte(strings.ReplaceAll(cfg, "{admin}", srv.AdminAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := startShell(t, work, data, filepath.Dir(testcaddy.Binary(t)))

	portRE := regexp.MustCompile(`\b(localhost|127\.0\.0\.1):(8080|8081|9080|2019)\b`)
	for _, b := range blocks {
		var context []string
		for _, c := range b.commands {
			if c.blank {
				context = nil
				continue
			}
			if c.comment {
				context = append(context, c.text)
				continue
			}
			line := strings.ReplaceAll(c.text, "go run ./cmd/keygate", "keygate")
			line = portRE.ReplaceAllStringFunc(line, func(s string) string {
				host, port, _ := strings.Cut(s, ":")
				return host + ":" + strconv.Itoa(ports[port])
			})
			where := fmt.Sprintf("README.md:%d", c.line)
			if m := placeholderRE.FindStringSubmatch(line); m != nil {
				v, err := sh.lookup(m[2], m[3])
				if err != nil {
					t.Fatalf("%s: %s: %v", where, c.text, err)
				}
				line = m[1] + "=" + shellQuote(v)
			}
			out, code := sh.run(t, line)
			allowed := strings.Join(append(context, line), "\n")
			if code != 0 {
				t.Fatalf("%s: exit status %d:\n$ %s\n%s", where, code, line, out)
			}
			for _, m := range httpStatusRE.FindAllStringSubmatch(out, -1) {
				if st, _ := strconv.Atoi(m[1]); (st >= 400 || st == 0) && !strings.Contains(allowed, m[1]) {
					t.Fatalf("%s: HTTP %d, and neither the command nor its comment expects it:\n$ %s\n%s", where, st, line, out)
				}
			}
		}
	}
	if logs := srv.Logs(); strings.Contains(logs, "not formatted") {
		t.Errorf("starting from Caddyfile.example warns that it is not formatted:\n%s", logs)
	}
}

// A README shell line: a command (with its continuation lines joined) or a
// comment line.
type shellLine struct {
	line    int
	text    string
	comment bool
	blank   bool // an empty line: it ends the comment's reach
}

type shellBlock struct{ commands []shellLine }

// shellBlocks returns the ```sh blocks of a Markdown text.
func shellBlocks(md string) []shellBlock {
	var blocks []shellBlock
	var cur *shellBlock
	var cont strings.Builder
	contStart := 0
	for i, l := range strings.Split(md, "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(l)
		switch {
		case cur == nil && trimmed == "```sh":
			cur = &shellBlock{}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur == nil:
		case cont.Len() > 0 || strings.HasSuffix(trimmed, "\\"):
			if cont.Len() == 0 {
				contStart = n
			}
			cont.WriteString(strings.TrimSuffix(trimmed, "\\"))
			if strings.HasSuffix(trimmed, "\\") {
				cont.WriteByte(' ')
				continue
			}
			cur.commands = append(cur.commands, shellLine{line: contStart, text: cont.String()})
			cont.Reset()
		case trimmed == "":
			cur.commands = append(cur.commands, shellLine{line: n, blank: true})
		case strings.HasPrefix(trimmed, "#"):
			cur.commands = append(cur.commands, shellLine{line: n, text: trimmed, comment: true})
		default:
			cur.commands = append(cur.commands, shellLine{line: n, text: trimmed})
		}
	}
	return blocks
}

var (
	placeholderRE = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=([A-Za-z0-9_]*)\.\.\.(?:\s+#\s*(.*))?$`)
	httpStatusRE  = regexp.MustCompile(`(?m)^__KG_HTTP__ (\d{3})$`)
	endRE         = regexp.MustCompile(`^__KG_END__ (\d+)$`)
	dottedRE      = regexp.MustCompile(`\b[a-zA-Z_]+(?:\.[a-zA-Z_]+)+\b`)
)

// shell is one bash session fed line by line.
type shell struct {
	in      io.WriteCloser
	lines   chan string
	outputs []string // every command's output, oldest first
}

func startShell(t *testing.T, dir, data, binDir string) *shell {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+dir, "XDG_DATA_HOME="+data, "XDG_CONFIG_HOME="+dir)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &shell{in: in, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	// Every curl answer ends with a line the test reads the status from.
	fmt.Fprintln(in, `exec 2>&1; curl() { command curl -sS -w '\n__KG_HTTP__ %{http_code}\n' "$@"; }`)
	return s
}

// run sends one line and returns what it printed and its exit status.
func (s *shell) run(t *testing.T, line string) (string, int) {
	t.Helper()
	if _, err := fmt.Fprintf(s.in, "%s\nprintf '\\n__KG_END__ %%d\\n' $?\n", line); err != nil {
		t.Fatalf("writing to bash: %v", err)
	}
	var out bytes.Buffer
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("bash exited during:\n$ %s\n%s", line, out.String())
			}
			if m := endRE.FindStringSubmatch(l); m != nil {
				code, _ := strconv.Atoi(m[1])
				s.outputs = append(s.outputs, out.String())
				return out.String(), code
			}
			out.WriteString(l + "\n")
		case <-timeout:
			t.Fatalf("no answer within 2 minutes:\n$ %s\n%s", line, out.String())
		}
	}
}

// lookup finds the value a placeholder line stands for in the answers so
// far, newest first: a token starting with prefix, or the JSON value at the
// dotted path named in hint.
func (s *shell) lookup(prefix, hint string) (string, error) {
	if prefix != "" {
		re := regexp.MustCompile(regexp.QuoteMeta(prefix) + `[A-Za-z0-9_.\-]+`)
		for i := len(s.outputs) - 1; i >= 0; i-- {
			if ms := re.FindAllString(s.outputs[i], -1); len(ms) > 0 {
				return ms[len(ms)-1], nil
			}
		}
		return "", fmt.Errorf("no answer so far has a value starting with %q", prefix)
	}
	path := dottedRE.FindString(hint)
	if path == "" {
		return "", fmt.Errorf("the comment %q names no JSON path (like data.id) to take the value from", hint)
	}
	for i := len(s.outputs) - 1; i >= 0; i-- {
		if v, ok := jsonPath(s.outputs[i], path); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no JSON answer so far has %s", path)
}

// jsonPath reads the string or number at a dotted path of the JSON object
// in out (after any HTTP headers).
func jsonPath(out, path string) (string, bool) {
	i := strings.Index(out, "{")
	if i < 0 {
		return "", false
	}
	var v any
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&v); err != nil {
		return "", false
	}
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[part]; !ok {
			return "", false
		}
	}
	switch v := v.(type) {
	case string:
		return v, v != ""
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
