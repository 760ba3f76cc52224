package testenv

import (
	"errors"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// Form is an HTML form as a browser would submit it.
type Form struct {
	Action string // as written (the caller resolves it against the page)
	Method string // upper case; GET when absent
	Fields url.Values
}

// FirstForm reads the first <form> of an HTML page with its named input
// fields (hidden ones included; buttons left out).
func FirstForm(page string) (*Form, error) {
	z := html.NewTokenizer(strings.NewReader(page))
	var f *Form
	for {
		switch z.Next() {
		case html.ErrorToken:
			if f == nil {
				return nil, errors.New("testenv: the page has no form")
			}
			return f, nil
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			attrs := map[string]string{}
			for _, a := range tok.Attr {
				attrs[a.Key] = a.Val
			}
			switch {
			case tok.Data == "form" && f == nil:
				f = &Form{Action: attrs["action"], Method: strings.ToUpper(attrs["method"]), Fields: url.Values{}}
				if f.Method == "" {
					f.Method = "GET"
				}
			case tok.Data == "input" && f != nil && attrs["name"] != "" && attrs["type"] != "submit":
				f.Fields.Add(attrs["name"], attrs["value"])
			}
		case html.EndTagToken:
			if f != nil && z.Token().Data == "form" {
				return f, nil
			}
		}
	}
}
