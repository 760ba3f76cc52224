package dashboards_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
)

// A minimal reader of the PromQL the dashboard uses: it finds the metric
// selectors with their label matchers, and the label names of by(),
// without(), on(), ignoring() and group_*(), and refuses what it does not
// know (an unknown function, a selector without a metric name, a bare
// Grafana variable), so that nothing in an expression goes unchecked.
// Prometheus's own parser is checked in TestDashboardInPrometheus.

// selector is one instant or range vector selector.
type selector struct {
	metric   string
	matchers []matcher
}

type matcher struct {
	label, op, value string
}

// query is what an expression reads.
type query struct {
	selectors []selector
	// grouping are the labels named in by(), without(), on(), ignoring()
	// and group_left/right().
	grouping []string
}

// functions are the PromQL functions and aggregations the dashboard may
// use.
var functions = map[string]bool{
	"sum": true, "max": true, "min": true, "avg": true, "count": true,
	"rate": true, "irate": true, "increase": true, "histogram_quantile": true,
}

var groupingKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

var binaryKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true}

type tok struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'r' range [...], 'p' punctuation
	text string
}

func lex(expr string) ([]tok, error) {
	var toks []tok
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			toks = append(toks, tok{'s', expr[i+1 : j]})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated range at %d", i)
			}
			toks = append(toks, tok{'r', expr[i+1 : i+j]})
			i += j + 1
		case c == '_' || c == ':' || unicode.IsLetter(rune(c)):
			j := i
			for j < len(expr) && (expr[j] == '_' || expr[j] == ':' || unicode.IsLetter(rune(expr[j])) || unicode.IsDigit(rune(expr[j]))) {
				j++
			}
			toks = append(toks, tok{'i', expr[i:j]})
			i = j
		case unicode.IsDigit(rune(c)) || c == '.':
			j := i
			for j < len(expr) && (unicode.IsDigit(rune(expr[j])) || expr[j] == '.' || expr[j] == 'e') {
				j++
			}
			toks = append(toks, tok{'n', expr[i:j]})
			i = j
		case strings.ContainsRune("=!<>", rune(c)) && i+1 < len(expr) && strings.ContainsRune("=~", rune(expr[i+1])):
			toks = append(toks, tok{'p', expr[i : i+2]})
			i += 2
		case strings.ContainsRune("{}(),=+-*/<>^%", rune(c)):
			toks = append(toks, tok{'p', string(c)})
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	return toks, nil
}

// parse reads an expression's selectors and grouping labels.
func parse(expr string) (query, error) {
	toks, err := lex(expr)
	if err != nil {
		return query{}, err
	}
	depth := 0
	for _, t := range toks {
		switch t.text {
		case "(":
			depth++
		case ")":
			depth--
		}
		if depth < 0 {
			break
		}
	}
	if depth != 0 {
		return query{}, fmt.Errorf("unbalanced parentheses")
	}
	var q query
	next := func(i int) tok {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return tok{}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == 'p' && t.text == "{":
			return q, fmt.Errorf("a selector without a metric name")
		case t.kind != 'i':
			continue
		case groupingKeywords[t.text]:
			if next(i).text != "(" {
				return q, fmt.Errorf("%s without a label list", t.text)
			}
			for i += 2; i < len(toks) && toks[i].text != ")"; i++ {
				if toks[i].kind == 'i' {
					q.grouping = append(q.grouping, toks[i].text)
				} else if toks[i].text != "," {
					return q, fmt.Errorf("%s(...) holds %q", t.text, toks[i].text)
				}
			}
			if i >= len(toks) {
				return q, fmt.Errorf("unterminated %s(...)", t.text)
			}
		case binaryKeywords[t.text]:
		case functions[t.text] && (next(i).text == "(" || groupingKeywords[next(i).text]):
			// sum(...), or sum by (...) (...)
		case next(i).text == "(":
			return q, fmt.Errorf("unknown function %s", t.text)
		default:
			s := selector{metric: t.text}
			if next(i).text == "{" {
				for i += 2; i < len(toks) && toks[i].text != "}"; i++ {
					if toks[i].text == "," {
						continue
					}
					if i+2 >= len(toks) || toks[i].kind != 'i' || toks[i+1].kind != 'p' || toks[i+2].kind != 's' {
						return q, fmt.Errorf("bad matcher in %s{...}", t.text)
					}
					s.matchers = append(s.matchers, matcher{toks[i].text, toks[i+1].text, toks[i+2].text})
					i += 2
				}
				if i >= len(toks) {
					return q, fmt.Errorf("unterminated %s{...}", t.text)
				}
			}
			q.selectors = append(q.selectors, s)
		}
	}
	return q, nil
}

// TestParse: the reader finds every selector, matcher and grouping label
// of the forms the dashboard uses, and refuses what it cannot read.
func TestParse(t *testing.T) {
	q, err := parse(`histogram_quantile(0.99, sum by (le, store) (rate(a_bucket{job=~"$job", op="lo,ad"}[$__rate_interval]))) / on(store) group_left(op) max without (instance) (b) and c{x!="}"}`)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v %v", q.selectors, q.grouping)
	want := `[{a_bucket [{job =~ $job} {op = lo,ad}]} {b []} {c [{x != }}]}] [le store store op instance]`
	if got != want {
		t.Errorf("parse:\n got %s\nwant %s", got, want)
	}
	for _, bad := range []string{
		`rat(a[5m])`,        // unknown function
		`{__name__="a"}`,    // no metric name
		`sum(a{job=~$job})`, // variable outside a string
		`sum by (le`,        // unterminated
		`a{job="x"`,         // unterminated matcher list
		`a{job}`,            // matcher without a value
		`sum by ("le") (a)`, // a string in by()
		`a[5m`,              // unterminated range
	} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%s) accepted", bad)
		}
	}
}
