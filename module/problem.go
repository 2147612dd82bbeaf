package module

import (
	"net/http"
	"strconv"
)

// problems are the pre-rendered RFC 9457 bodies the gateway answers with.
// One body per status: the reason a credential failed goes to the log and
// the metrics, never to the client.
var problems = map[int][]byte{
	http.StatusBadRequest: problemBody("bad-request", "Bad Request", http.StatusBadRequest,
		"The request carries more than one credential."),
	http.StatusUnauthorized: problemBody("unauthenticated", "Unauthorized", http.StatusUnauthorized,
		"A valid access key or request signature is required."),
	http.StatusForbidden: problemBody("forbidden", "Forbidden", http.StatusForbidden,
		"The credential is valid but has no permission for this resource."),
	http.StatusRequestEntityTooLarge: problemBody("body-too-large", "Content Too Large", http.StatusRequestEntityTooLarge,
		"The signed request's body is larger than this route verifies (max_signed_body)."),
	http.StatusTooManyRequests: problemBody("rate-limited", "Too Many Requests", http.StatusTooManyRequests,
		"The request limit of this user is reached; retry after the time in Retry-After."),
	http.StatusServiceUnavailable: problemBody("unavailable", "Service Unavailable", http.StatusServiceUnavailable,
		"The key store is unavailable; retry after the time in Retry-After."),
}

// methodOverrideProblem is keygate_auth's 400 for a method-override header.
var methodOverrideProblem = problemBody("method-override", "Bad Request", http.StatusBadRequest,
	"The request carries a method-override header (X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override), which this route does not let through.")

// writeBadRequest answers 400 with body.
func writeBadRequest(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/problem+json"}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}

// ProblemTypeBase prefixes the type URI of every problem keygate answers.
const ProblemTypeBase = "https://keygate.dev/problems/"

func problemBody(slug, title string, status int, detail string) []byte {
	return []byte(`{"type":"` + ProblemTypeBase + slug + `","title":"` + title + `","status":` +
		strconv.Itoa(status) + `,"detail":"` + detail + `"}`)
}

// writeProblem answers with the problem body for status.
func writeProblem(w http.ResponseWriter, status int) {
	h := w.Header()
	h["Content-Type"] = []string{"application/problem+json"}
	h["Cache-Control"] = []string{"no-store"}
	switch status {
	case http.StatusUnauthorized:
		h["Www-Authenticate"] = []string{`Bearer realm="keygate"`}
	case http.StatusServiceUnavailable:
		h["Retry-After"] = []string{"1"}
	}
	w.WriteHeader(status)
	_, _ = w.Write(problems[status])
}
