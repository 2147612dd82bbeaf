package admin

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/importer"
	"github.com/keygate/keygate/keys"
)

// ImportReport is the data of POST /v1/imports: what the import created,
// updated, skipped and failed (each item with where it is in the file), or
// would have, for a dry run.
type ImportReport struct {
	Source string `json:"source"`
	Tenant string `json:"tenant"`
	DryRun bool   `json:"dryRun"`
	// Written says whether anything was stored.
	Written  bool              `json:"written"`
	Created  int               `json:"created"`
	Updated  int               `json:"updated"`
	Skipped  int               `json:"skipped"`
	Failed   int               `json:"failed"`
	Items    []keys.ImportItem `json:"items"`
	Warnings []string          `json:"warnings"`
}

// importProblem is the 422 answer of an import that wrote nothing because
// items failed: a problem document that also carries the report.
type importProblem struct {
	Problem
	Import ImportReport `json:"import"`
}

// fingerprint turns a secret value into a stable id that does not reveal
// it (peppered like key hashes), for entries a peer gives no id of their own.
func (h *Handler) fingerprint(s string) string {
	return hex.EncodeToString(h.hasher.Sum("keygate-import\x00" + s)[:16])
}

// importFile answers POST /v1/imports?from=&tenant=&dryRun=&continue=&expires=&window=&tykPlain=.
func (h *Handler) importFile(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	source := q.Get("from")
	if !slices.Contains(importer.Sources, source) {
		return errField("from", "must be one of "+strings.Join(importer.Sources, ", "))
	}
	setActivityPath(r, r.URL.Path+"?from="+source)
	tenant := q.Get("tenant")
	if tenant == "" && !c.superadmin && len(c.tenants) == 1 {
		tenant = c.tenants[0]
	}
	if tenant == "" {
		return errField("tenant", "is required")
	}
	if keys.ValidateID(tenant) != nil {
		return errField("tenant", "is not a valid tenant id")
	}
	if !c.adminOf(tenant) {
		return errNotFound("tenant")
	}
	setTenant(r, tenant)
	flag := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, errField(name, "must be true or false")
		}
		return b, nil
	}
	dryRun, err := flag("dryRun")
	if err != nil {
		return err
	}
	cont, err := flag("continue")
	if err != nil {
		return err
	}
	tykPlain, err := flag("tykPlain")
	if err != nil {
		return err
	}
	now := h.now()
	opts := importer.Options{Tenant: tenant, TykPlainKeys: tykPlain, Fingerprint: h.fingerprint, Now: now}
	if v := q.Get("expires"); v != "" {
		if opts.Expires, err = importer.ParseExpiry(v, now); err != nil {
			return errField("expires", err.Error())
		}
	}
	if v := q.Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 24*time.Hour {
			return errField("window", "must be a duration from 1s to 24h")
		}
		opts.Window = d
	}
	if r.ContentLength > importer.MaxFile {
		return errTooLarge(importer.MaxFile)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, importer.MaxFile))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge(importer.MaxFile)
		}
		return errBadRequest("reading the body failed")
	}
	if len(data) == 0 {
		return errBadRequest("the body must be the file to import")
	}
	res, err := importer.Read(source, data, opts)
	if err != nil {
		return newError(http.StatusUnprocessableEntity, "import-unreadable", "Unreadable import", err.Error())
	}
	if res.MissingExpiry > 0 {
		return errField("expires", fmt.Sprintf("%d keys of the file have no expiry; keygate keys must expire: give expires (a date, a time or a duration)", res.MissingExpiry))
	}
	b := res.Batch
	// A type that may not hold access keys cannot take a peer's keys.
	users := b.Users[:0]
	for _, u := range b.Users {
		typ := u.User.Type
		if typ == "" {
			typ = keys.UserService
		}
		if len(u.Keys) > 0 && !h.creds.Allows(typ, keys.CredAccessKey) {
			b.Invalid = append(b.Invalid, keys.ImportItem{Ref: u.Ref, Kind: "user", Action: keys.ImportFail, ExternalID: u.ExternalID,
				Reason: fmt.Sprintf("users of type %s may not hold access keys (allowed: %s)", typ, h.creds.Describe(typ))})
			continue
		}
		users = append(users, u)
	}
	b.Users = users
	storeOpts := keys.ImportOptions{DryRun: dryRun, Continue: cont, Hasher: h.hasher}
	if !c.superadmin {
		// A re-import that changes an existing user's type reaches every
		// tenant the user acts in (see foreignTenant).
		storeOpts.AdminOf = c.adminOf
	}
	out, err := h.store.Import(r.Context(), b, storeOpts, c.actor)
	if err != nil {
		return err
	}
	rep := ImportReport{
		Source: source, Tenant: tenant, DryRun: dryRun, Written: out.Written,
		Created: out.Created, Updated: out.Updated, Skipped: out.Skipped, Failed: out.Failed,
		Items: out.Items, Warnings: res.Warnings,
	}
	if rep.Items == nil {
		rep.Items = []keys.ImportItem{}
	}
	if rep.Warnings == nil {
		rep.Warnings = []string{}
	}
	if out.Failed > 0 && !cont && !dryRun {
		p := importProblem{Import: rep, Problem: Problem{
			Type: ProblemTypeBase + "import-failed", Title: "Import failed", Status: http.StatusUnprocessableEntity,
			Detail: fmt.Sprintf("%d items failed; nothing was written (continue=true writes the others)", out.Failed),
		}}
		for _, it := range out.Items {
			if it.Action == keys.ImportFail {
				p.Errors = append(p.Errors, keys.FieldError{Field: it.Ref, Message: it.Reason})
			}
		}
		body, _ := json.Marshal(p)
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write(append(body, '\n'))
		return nil
	}
	status := http.StatusOK
	if out.Written && out.Created > 0 {
		status = http.StatusCreated
	}
	writeOne(w, status, "Import", 0, rep)
	return nil
}
