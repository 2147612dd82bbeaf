package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/keygate/keygate/keys"
)

// maxExportHistory bounds the history entries in one export.
const maxExportHistory = 100_000

// history lists a user's changelog, newest first. Like export, it needs the
// right to change the user (it shows changes in every tenant).
func (h *Handler) history(w http.ResponseWriter, r *http.Request, c *caller) error {
	lo, err := parseList(r.URL.Query())
	if err != nil {
		return err
	}
	u, err := h.manageableUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	page, err := h.store.History(r.Context(), u.ID, lo.Page, lo.Size)
	if err != nil {
		return err
	}
	writeList(w, "HistoryEntry", page.Items, page.Total, lo)
	return nil
}

// activity lists admin API calls, newest first. A tenant admin sees the
// calls that acted on its tenant.
func (h *Handler) activity(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	lo, err := parseList(q, "at")
	if err != nil {
		return err
	}
	aq := keys.ActivityQuery{ListOptions: lo}
	if aq.Actor, err = queryString(q, "actor", 128); err != nil {
		return err
	}
	aq.Tenant = q.Get("tenant")
	if aq.Tenant != "" && keys.ValidateID(aq.Tenant) != nil {
		return errField("tenant", "is not a valid tenant id")
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &aq.From}, {"to", &aq.To}} {
		if s := q.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return errField(p.name, "must be an RFC 3339 timestamp")
			}
			*p.dst = t.UTC()
		}
	}
	if !aq.From.IsZero() && !aq.To.IsZero() && aq.To.Before(aq.From) {
		return errField("to", "must not be before from")
	}
	if !c.superadmin {
		switch {
		case aq.Tenant == "" && len(c.tenants) == 1:
			aq.Tenant = c.tenants[0]
		case aq.Tenant == "":
			return errField("tenant", "is required")
		case !c.adminOf(aq.Tenant):
			return errNotFound("tenant")
		}
	}
	setTenant(r, aq.Tenant)
	page, err := h.store.ListActivity(r.Context(), aq)
	if err != nil {
		return err
	}
	writeList(w, "Activity", page.Items, page.Total, lo)
	return nil
}

// export returns everything stored about a user as one document: the user,
// its permissions, its keys (masked), its secrets (no values) and its
// whole history.
func (h *Handler) export(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := h.manageableUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	doc, err := h.exportUser(r.Context(), u)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Export", u.Version, doc)
	return nil
}

func (h *Handler) exportUser(ctx context.Context, u keys.User) (Export, error) {
	now := h.now()
	doc := Export{ExportedAt: now.UTC(), User: userView(u),
		Permissions: []PermissionView{}, Keys: []KeyView{}, Secrets: []SecretView{}, History: []keys.HistoryEntry{}}
	perms, err := h.store.UserPermissions(ctx, u.ID)
	if err != nil {
		return doc, err
	}
	for i := range perms {
		var tp *keys.Tenant
		if t, err := h.store.GetTenant(ctx, perms[i].TenantID); err == nil {
			tp = &t
		} else if !errors.Is(err, keys.ErrNotFound) {
			return doc, err
		}
		doc.Permissions = append(doc.Permissions, permissionView(&perms[i], &u, tp))
	}
	ks, err := h.store.ListKeys(ctx, u.ID)
	if err != nil {
		return doc, err
	}
	for i := range ks {
		doc.Keys = append(doc.Keys, keyView(&ks[i], now))
	}
	ss, err := h.store.ListSecrets(ctx, u.ID)
	if err != nil {
		return doc, err
	}
	for i := range ss {
		doc.Secrets = append(doc.Secrets, secretView(&ss[i]))
	}
	for page := 1; len(doc.History) < maxExportHistory; page++ {
		p, err := h.store.History(ctx, u.ID, page, maxPageSize)
		if err != nil {
			return doc, err
		}
		doc.History = append(doc.History, p.Items...)
		if len(p.Items) < maxPageSize || len(doc.History) >= p.Total {
			break
		}
	}
	return doc, nil
}
