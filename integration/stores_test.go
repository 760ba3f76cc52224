package integration

import "github.com/oidc-session/oidc_session/internal/testcaddy"

// storeNamed is the store of the matrix with this name, for tests about
// particular stores (a new store joins the tests that loop over
// testcaddy.Stores without any change here).
func storeNamed(name string) testcaddy.StoreCase {
	for _, st := range testcaddy.Stores {
		if st.Name == name {
			return st
		}
	}
	panic("no store " + name + " in testcaddy.Stores")
}
