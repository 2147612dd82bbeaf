package admin

import (
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/keygate/keygate/keys"
)

// tenantBody is the body of POST and PATCH /v1/tenants.
type tenantBody struct {
	ID     opt[string]            `json:"id"`
	Name   opt[string]            `json:"name"`
	Status opt[keys.TenantStatus] `json:"status"`
	// Email and Notifications: the tenant's notification address and the
	// event types it gets; LeakPolicy: REVOKE or FLAG.
	Email         opt[string]   `json:"email"`
	Notifications opt[[]string] `json:"notifications"`
	LeakPolicy    opt[string]   `json:"leakPolicy"`
	Version       *int64        `json:"version"`
}

// validateEvents checks the notification members of a tenant body.
func (b *tenantBody) validateEvents(v *keys.ValidationError) {
	checkEmail(v, "email", b.Email.V)
	checkEventTypes(v, "notifications", b.Notifications.V)
	if p := b.LeakPolicy.V; p != "" && p != keys.LeakRevoke && p != keys.LeakFlag {
		v.Add("leakPolicy", "must be REVOKE or FLAG")
	}
}

// apply sets the notification members of a tenant body on t.
func (b *tenantBody) applyEvents(t *keys.Tenant) {
	if b.Email.Set {
		t.Email = b.Email.V
	}
	if b.Notifications.Set {
		t.Notifications = append([]string(nil), b.Notifications.V...)
	}
	if b.LeakPolicy.Set {
		t.LeakPolicy = b.LeakPolicy.V
	}
}

// checkEmail validates an optional e-mail address.
func checkEmail(v *keys.ValidationError, field, e string) {
	if e != "" && (len(e) > 254 || strings.Count(e, "@") != 1 || strings.HasPrefix(e, "@") || strings.HasSuffix(e, "@") ||
		strings.ContainsAny(e, " \t\r\n<>,;\"")) {
		v.Add(field, "must be an email address")
	}
}

// checkEventTypes validates a list of event types ("*" for all).
func checkEventTypes(v *keys.ValidationError, field string, list []string) {
	if len(list) > len(keys.EventTypes)+1 {
		v.Add(field, "too many entries")
		return
	}
	for _, e := range list {
		if e != "*" && !keys.ValidEventType(e) {
			v.Add(field, "unknown event type "+clip(e, 64)+" (one of "+strings.Join(keys.EventTypes, ", ")+", or *)")
			return
		}
	}
}

// visibleTenant returns a tenant the caller may see, or 404.
func (h *Handler) visibleTenant(r *http.Request, c *caller, id string) (keys.Tenant, error) {
	if keys.ValidateID(id) != nil || !c.adminOf(id) {
		return keys.Tenant{}, errNotFound("tenant")
	}
	t, err := h.store.GetTenant(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) {
		return t, errNotFound("tenant")
	}
	setTenant(r, id)
	return t, err
}

func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	lo, err := parseList(q, "id", "name", "createdAt")
	if err != nil {
		return err
	}
	tq := keys.TenantQuery{ListOptions: lo}
	if tq.Q, err = queryString(q, "q", 200); err != nil {
		return err
	}
	st, err := queryEnum(q, "status", string(keys.TenantActive), string(keys.TenantArchived))
	if err != nil {
		return err
	}
	tq.Status = keys.TenantStatus(st)
	if !c.superadmin {
		tq.IDs = append([]string{}, c.tenants...)
		if len(c.tenants) == 1 {
			setTenant(r, c.tenants[0])
		}
	}
	page, err := h.store.ListTenants(r.Context(), tq)
	if err != nil {
		return err
	}
	writeList(w, "Tenant", page.Items, page.Total, lo)
	return nil
}

func (h *Handler) createTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.superadmin {
		return errForbidden("only a superadmin creates tenants")
	}
	var b tenantBody
	if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
		return err
	}
	v := &keys.ValidationError{}
	t := keys.Tenant{ID: b.ID.V, Name: b.Name.V, Status: b.Status.V}
	if b.Version != nil {
		v.Add("version", "is not allowed when creating")
	}
	if t.ID == "" {
		t.ID = keys.NewID()
	} else if err := keys.ValidateID(t.ID); err != nil {
		v.Add("id", err.Error())
	}
	if t.Name == "" {
		t.Name = t.ID
	}
	checkName(v, "name", t.Name)
	b.validateEvents(v)
	b.applyEvents(&t)
	switch t.Status {
	case "":
		t.Status = keys.TenantActive
	case keys.TenantActive, keys.TenantArchived:
	default:
		v.Add("status", "must be ACTIVE or ARCHIVED")
	}
	if err := v.Err(); err != nil {
		return err
	}
	setTenant(r, t.ID)
	out, err := h.store.CreateTenant(r.Context(), t, c.actor)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/tenants/"+out.ID)
	writeOne(w, http.StatusCreated, "Tenant", out.Version, out)
	return nil
}

func (h *Handler) getTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	t, err := h.visibleTenant(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Tenant", t.Version, t)
	return nil
}

// patchTenant changes name or status. Tenant admins may rename their own
// tenant; only a superadmin changes a tenant's status.
func (h *Handler) patchTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	cur, err := h.visibleTenant(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	var b tenantBody
	pre, err := h.decodeUpdate(w, r, &b, &b.Version)
	if err != nil {
		return err
	}
	v := &keys.ValidationError{}
	if b.ID.Set && b.ID.V != cur.ID {
		v.Add("id", "cannot be changed")
	}
	checkNewName(v, "name", b.Name)
	b.validateEvents(v)
	if b.Status.Set && b.Status.V != keys.TenantActive && b.Status.V != keys.TenantArchived {
		v.Add("status", "must be ACTIVE or ARCHIVED")
	}
	if err := v.Err(); err != nil {
		return err
	}
	if b.Status.Set && b.Status.V != cur.Status && !c.superadmin {
		return errForbidden("only a superadmin changes a tenant's status")
	}
	version, err := pre.expect(cur.Version)
	if err != nil {
		return err
	}
	out, err := h.store.UpdateTenant(r.Context(), cur.ID, version, func(t *keys.Tenant) error {
		if b.Name.Set {
			t.Name = b.Name.V
		}
		if b.Status.Set {
			t.Status = b.Status.V
		}
		b.applyEvents(t)
		return nil
	}, c.actor)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Tenant", out.Version, out)
	return nil
}

// checkName validates a display name: 1–200 characters, no control characters.
func checkName(v *keys.ValidationError, field, s string) {
	switch {
	case strings.TrimSpace(s) == "":
		v.Add(field, "is required")
	case len(s) > 200:
		v.Add(field, "must be at most 200 bytes")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		v.Add(field, "must not contain control characters")
	}
}

// checkNewName validates a name a PATCH may change: absent is fine, null is not.
func checkNewName(v *keys.ValidationError, field string, o opt[string]) {
	switch {
	case !o.Set:
	case o.Null:
		v.Add(field, "must not be null")
	default:
		checkName(v, field, o.V)
	}
}

// checkText validates an optional free text of at most max bytes.
func checkText(v *keys.ValidationError, field, s string, max int) {
	switch {
	case len(s) > max:
		v.Add(field, "is too long")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		v.Add(field, "must not contain control characters")
	}
}
