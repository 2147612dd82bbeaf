package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/keygate/keygate/keys"
)

type obj = map[string]any

// openAPI serves the OpenAPI 3.1 document.
func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request, _ *caller) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Length", strconv.Itoa(len(h.openapi)))
	_, _ = w.Write(h.openapi)
	return nil
}

// OpenAPI returns the API's OpenAPI 3.1 document (JSON).
func OpenAPI() []byte { return buildOpenAPI() }

// withProps returns a copy of props with more added.
func withProps(props, more obj) obj {
	out := make(obj, len(props)+len(more))
	for k, v := range props {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func str(desc string) obj { return obj{"type": "string", "description": desc} }

func enum(values ...string) obj { return obj{"type": "string", "enum": values} }

// anyValue is a schema for any JSON value, null included (written out:
// validators that read OpenAPI 3.0 take {} to exclude null).
func anyValue(desc string) obj {
	return obj{"type": []string{"string", "number", "boolean", "array", "object", "null"}, "description": desc}
}

var (
	eventType  = obj{"type": "string", "enum": append([]string{"*"}, keys.EventTypes...)}
	metaSchema = obj{"type": []string{"object", "null"}, "description": "free data (at most 4096 bytes of JSON); returned by the API, never forwarded upstream"}
	tagsSchema = obj{"type": "array", "items": obj{"type": "string", "minLength": 1, "maxLength": 64}, "maxItems": 50, "uniqueItems": true}
	dateTime   = obj{"type": "string", "format": "date-time"}
	strList    = obj{"type": "array", "items": obj{"type": "string"}}
	integer    = obj{"type": "integer"}
)

// schemas describes every body and data object.
func schemas() obj {
	roleEntry := obj{"type": "object", "properties": obj{"key": str(""), "type": enum("STANDARD", "CUSTOMER")}}
	totalsProps := obj{
		"requests": obj{"type": "integer", "description": "every request counted"}, "allowed": integer,
		"limited": obj{"type": "integer", "description": "refused by the user's request limit (429)"},
		"refused": obj{"type": "integer", "description": "refused credentials and permissions (401, 403): the sum of refusals"},
		"refusals": obj{"type": "object", "properties": obj{
			"badKey":    obj{"type": "integer", "description": "no valid credential: missing, malformed, unknown, wrong secret or signature, replayed"},
			"expired":   obj{"type": "integer", "description": "the access key or token had expired"},
			"revoked":   obj{"type": "integer", "description": "the key was revoked, disabled or past its grace period, or its user, tenant or type no longer allows it"},
			"coverage":  obj{"type": "integer", "description": "a signature that does not bind the request"},
			"forbidden": obj{"type": "integer", "description": "no ACTIVE permission in the tenant, or the route's role or entity missing (403)"},
		}},
		"throttled":   obj{"type": "integer", "description": "refused by the per-client-IP throttle (429)"},
		"invalid":     obj{"type": "integer", "description": "malformed requests (400, 413)"},
		"unavailable": obj{"type": "integer", "description": "answered 503: store or limiter unreachable"},
	}
	usageTotals := obj{"type": "object", "properties": totalsProps}
	bucket := obj{"type": "object", "properties": withProps(totalsProps, obj{"start": dateTime})}
	window := obj{"type": "object", "description": "[from, to) and its totals", "properties": withProps(totalsProps, obj{"from": dateTime, "to": dateTime})}
	top := obj{"type": "object", "description": "the first users (see GET …/usage/users for all)", "properties": obj{
		"by": enum("requests", "refusals"), "items": obj{"type": "array", "items": ref("UserUsage")},
		"total": obj{"type": "integer", "description": "users with requests (refusals) in lastDay"},
	}}
	keyProps := obj{
		"id": str(""), "name": str(""), "userId": str(""), "tenant": str(""),
		"masked": str("kg_<id>_…last4"), "status": enum("ACTIVE", "INACTIVE", "REVOKED"),
		"expiresAt": dateTime, "usable": obj{"type": "boolean"}, "disableAt": dateTime,
		"replacedBy": str(""), "version": integer, "createdAt": dateTime, "updatedAt": dateTime,
		"lastUsedAt": dateTime, "key": str("the full key, only in the creating response"),
		"previous": ref("Key"), "meta": metaSchema, "tags": tagsSchema,
		"origin":       obj{"allOf": []obj{ref("Origin")}, "description": "where an imported key came from; its value is the peer's, found by its hash"},
		"hashScheme":   str("a key imported only as a peer's hash: the legacy scheme it is stored under until its first use re-hashes it (sha256, sha1, fnv128, murmur32, murmur64, murmur128)"),
		"rehashedFrom": str("the legacy scheme the key was found by at its first use"), "rehashedAt": dateTime,
	}
	userProps := obj{
		"id": str("decimal digits when generated"), "name": str("unique within the primary tenant"),
		"description": str(""), "email": str(""),
		"type": enum("TECHNICAL", "SERVICE", "APPLICATION"),
		"role": obj{"type": "string", "enum": []string{"ADMIN", "MEMBER", "VIEWER"},
			"description": "the role of the user's permission in its primary tenant; setting it sets that permission's role. " +
				"The role that counts in a tenant is always the user's permission's role there."},
		"customerRoles": strList, "accessControlEntities": strList,
		"primaryTenant": str(""), "scope": str(""),
		"requestLimit":     obj{"type": "integer", "minimum": 0, "description": "requests per window; 0 = route default"},
		"plannedPurgeDate": obj{"type": []string{"string", "null"}, "format": "date-time"},
		"status":           enum("CREATE", "ACTIVE", "INACTIVE", "DELETING", "DELETED"),
		"superadmin":       obj{"type": "boolean"},
		"notifications":    obj{"type": "array", "items": eventType, "description": "event types about this user that its email gets"},
		"version":          integer, "createdAt": dateTime, "updatedAt": dateTime, "lastUsedAt": dateTime,
		"meta": metaSchema, "tags": tagsSchema,
		"origin": obj{"allOf": []obj{ref("Origin")}, "description": "read-only: where an imported user came from"},
	}
	fieldError := obj{"type": "object", "properties": obj{"field": str(""), "message": str("")}}
	tenantEvents := obj{
		"email":         str("the tenant's notification address"),
		"notifications": obj{"type": "array", "items": eventType, "description": "event types of the tenant that email gets"},
		"leakPolicy":    obj{"type": "string", "enum": []string{keys.LeakRevoke, keys.LeakFlag}, "description": "what a leak report does to a key: REVOKE (default) or FLAG"},
	}
	return obj{
		"Problem": obj{"type": "object", "required": []string{"type", "title", "status"}, "properties": obj{
			"type": str("https://keygate.dev/problems/<slug>"), "title": str(""), "status": integer,
			"detail": str(""), "errors": obj{"type": "array", "items": fieldError},
		}},
		"VerifyRequest": obj{"type": "object", "additionalProperties": false, "properties": obj{
			"key":     str("an access key kg_… (exactly one of key and token)"),
			"token":   str("an access token from the token endpoint"),
			"tenant":  str("the tenant in which it must be valid; default: the caller key's tenant"),
			"consume": obj{"type": "integer", "enum": []int{0, 1}, "description": "1 (default): count against the user's request limit; 0: check only"},
		}},
		"VerifyResult": obj{"type": "object", "required": []string{"valid", "code", "tenant"}, "properties": obj{
			"valid": obj{"type": "boolean"},
			"code": obj{"type": "string", "enum": []string{"VALID", "INVALID", "FORBIDDEN", "RATE_LIMITED"},
				"description": "INVALID never says whether a key is unknown, wrong, expired or revoked"},
			"user": obj{"type": "object", "description": "VALID and RATE_LIMITED only: a FORBIDDEN credential may be another tenant's",
				"properties": obj{"id": str(""), "name": str(""), "type": enum("TECHNICAL", "SERVICE", "APPLICATION")}},
			"tenant": str(""), "role": enum("ADMIN", "MEMBER", "VIEWER"), "customerRoles": strList,
			"keyId": str("the access key (or the key a token came from); VALID and RATE_LIMITED only"),
			"ratelimit": obj{"type": "object", "description": "after this call; absent without a limit or with consume 0",
				"properties": obj{"limit": integer, "remaining": integer, "reset": obj{"type": "integer", "description": "seconds until quota frees"}}},
		}},
		"Envelope": obj{"type": "object", "properties": obj{
			"status": enum("OK"), "type": str("kind of data"), "errors": obj{"type": "array", "items": fieldError},
			"total": integer, "page": integer, "size": integer, "data": obj{},
			"code":      obj{"type": "integer", "description": "the HTTP status code of the response (seed 003's Response Code)"},
			"timestamp": obj{"type": "string", "format": "date-time", "description": "when keygate received the call, UTC (seed 003's Timestamp)"},
			"account":   str("the tenant the call acted on, or else the tenant of the caller's key (seed 003's Account); absent when there is neither"),
		}},
		"Tenant": obj{"type": "object", "properties": withProps(tenantEvents, obj{
			"id": str(""), "name": str(""), "status": enum("ACTIVE", "ARCHIVED"),
			"version": integer, "createdAt": dateTime, "updatedAt": dateTime,
		})},
		"TenantCreate": obj{"type": "object", "additionalProperties": false, "properties": withProps(tenantEvents, obj{
			"id": str("default: generated"), "name": str("default: the id"), "status": enum("ACTIVE", "ARCHIVED"),
		})},
		"TenantPatch": obj{"type": "object", "additionalProperties": false, "properties": withProps(tenantEvents, obj{
			"name": str(""), "status": enum("ACTIVE", "ARCHIVED"), "version": integer,
		})},
		"Webhook": obj{"type": "object", "properties": obj{
			"id": str(""), "tenant": str("absent: a superadmin's webhook for every tenant"), "url": str("http or https"),
			"events": obj{"type": "array", "items": eventType}, "enabled": obj{"type": "boolean"},
			"description": str(""), "createdBy": str(""), "version": integer, "createdAt": dateTime, "updatedAt": dateTime,
			"secret":                  str("the signing secret whsec_…, only in the response that created or rotated it"),
			"previousSecretExpiresAt": obj{"type": "string", "format": "date-time", "description": "during a rotation's grace period: when the replaced secret stops signing deliveries"},
		}},
		"WebhookRotate": obj{"type": "object", "additionalProperties": false, "properties": obj{
			"gracePeriod": obj{"oneOf": []obj{str("Go duration, e.g. 24h"), obj{"type": "number", "description": "seconds"}},
				"description": "keep signing with the old secret too (at most 720h); default 0: it ends now"},
		}},
		"WebhookInput": obj{"type": "object", "additionalProperties": false, "properties": obj{
			"tenant": str("POST only; default: a tenant admin's tenant; a superadmin may leave it out for all tenants"),
			"url":    str("required on POST: an absolute http or https URL"), "events": obj{"type": "array", "items": eventType},
			"enabled": obj{"type": "boolean", "description": "default true"}, "description": str(""), "version": integer,
		}},
		"Delivery": obj{"type": "object", "properties": obj{
			"id": str("<event id>.<target>"), "tenant": str(""), "kind": enum(keys.DeliveryWebhook, keys.DeliveryEmail),
			"webhookId": str(""), "address": str("kind email"), "eventId": str("the webhook-id header"), "eventType": eventType,
			"status": enum(deliveryStatuses...), "attempts": integer, "createdAt": dateTime, "nextAttemptAt": dateTime,
			"lastAttemptAt": dateTime, "lastResponse": obj{"type": "integer", "description": "HTTP status of the last attempt; 0 without an answer"},
			"lastError": str(""), "deliveredAt": dateTime, "event": obj{"type": "object", "description": "the event as stored (id, type, time, tenant, actor, subject, data)"},
		}},
		"User":      obj{"type": "object", "properties": withProps(userProps, obj{"key": obj{"$ref": "#/components/schemas/Key", "description": "the first access key with the full key, only in the response to a POST /v1/users that asked for one"}})},
		"UserInput": obj{"type": "object", "additionalProperties": false, "properties": withProps(userProps, obj{"key": obj{"type": "object", "additionalProperties": false, "required": []string{"name", "expiresAt"}, "description": "POST only: also issue the user's first access key (seed 000's one-step form)", "properties": obj{"name": str("key name"), "expiresAt": dateTime}}})},
		"Key":       obj{"type": "object", "properties": keyProps},
		"Origin": obj{"type": "object", "properties": obj{
			"source": enum("kong", "tyk", "unkey", "krakend", "csv"), "externalId": str("the peer's id of it"), "importedAt": dateTime,
		}},
		"ImportItem": obj{"type": "object", "properties": obj{
			"ref": str("where in the file: consumers[2], keys[0], line 4, …"), "kind": enum("user", "key"),
			"action": enum("create", "update", "skip", "fail"), "externalId": str(""), "id": str("the keygate id"),
			"name": str(""), "userId": str(""), "reason": str("why it was skipped or failed"),
			"changes": obj{"type": "object", "description": "field → {from, to}, for updates"},
		}},
		"TenantExport": obj{"type": "object", "properties": obj{
			"file": obj{"type": "object", "description": "the tenant file: see GET /v1/schemas/tenant-file.json"},
			"versions": obj{"type": "object", "description": "stored versions (tenant; users, keys, permissions by id) for If-Match",
				"properties": obj{"tenant": integer, "users": obj{"type": "object"}, "keys": obj{"type": "object"}, "permissions": obj{"type": "object"}}},
		}},
		"ImportProblem": obj{"type": "object", "required": []string{"type", "title", "status"}, "properties": obj{
			"type": str("https://keygate.dev/problems/import-failed or …/import-unreadable"), "title": str(""), "status": integer,
			"detail": str(""), "errors": obj{"type": "array", "items": fieldError, "description": "one per failed item: field is where it is in the file"},
			"import": obj{"allOf": []obj{ref("ImportReport")}, "description": "the whole report (import-failed only)"},
		}},
		"ImportReport": obj{"type": "object", "properties": obj{
			"source": str(""), "tenant": str(""), "dryRun": obj{"type": "boolean"},
			"written": obj{"type": "boolean", "description": "whether anything was stored"},
			"created": integer, "updated": integer, "skipped": integer, "failed": integer,
			"items":    obj{"type": "array", "items": ref("ImportItem")},
			"warnings": obj{"type": "array", "items": obj{"type": "string"}, "description": "settings of the file keygate did not take"},
		}},
		"KeyCreate": obj{"type": "object", "additionalProperties": false, "required": []string{"name", "expiresAt"}, "properties": obj{
			"name": str("unique per user"), "expiresAt": dateTime, "tenant": str("default: the user's primary tenant"),
			"meta": metaSchema, "tags": tagsSchema,
		}},
		"KeyPatch": obj{"type": "object", "additionalProperties": false, "properties": obj{
			"name": str(""), "expiresAt": dateTime, "status": enum("ACTIVE", "INACTIVE"), "version": integer,
			"meta": metaSchema, "tags": tagsSchema,
		}},
		"KeyReplace": obj{"type": "object", "additionalProperties": false, "properties": obj{
			"gracePeriod": obj{"oneOf": []obj{str("Go duration, e.g. 24h"), obj{"type": "number", "description": "seconds"}}},
			"expiresAt":   dateTime,
		}},
		"Secret": obj{"type": "object", "properties": obj{
			"id": str(""), "userId": str(""), "name": str(""), "status": enum("ACTIVE", "INACTIVE"),
			"version": integer, "createdAt": dateTime, "updatedAt": dateTime, "lastUsedAt": dateTime,
			"secret": str("base64 of 32 bytes, only in the creating response"),
		}},
		"SecretInput": obj{"type": "object", "additionalProperties": false, "properties": obj{
			"name": str(""), "status": enum("ACTIVE", "INACTIVE"), "version": integer,
		}},
		"Roles": obj{"type": "object", "description": "the roles of the user's permission in one workspace and, in GET /v1/users/{id}/roles, in every tenant", "properties": obj{
			"userId": str(""), "workspace": str("the tenant of the permission; absent in GET …/roles when the user holds none in the default workspace"),
			"role": enum("ADMIN", "MEMBER", "VIEWER"), "customerRoles": strList,
			"roles":   obj{"type": "array", "items": roleEntry},
			"version": integer,
			"user":    obj{"$ref": "#/components/schemas/User", "description": "GET …/roles: the user's record, its personal data (seed 003)"},
			"tenants": obj{"type": "array", "description": "GET …/roles: one entry per tenant the user holds a permission in (those the caller may see), by tenant", "items": obj{"type": "object", "properties": obj{
				"workspace": str(""), "workspaceName": str(""), "status": enum("ACTIVE", "INVITED", "ARCHIVED"),
				"role": enum("ADMIN", "MEMBER", "VIEWER"), "customerRoles": strList,
				"roles": obj{"type": "array", "items": roleEntry}, "version": integer,
			}}},
		}},
		"ConsoleSession": obj{"type": "object", "description": "who a console session (or access key) acts as", "properties": obj{
			"user": obj{"type": "object", "properties": obj{"id": str(""), "name": str(""),
				"type": enum("TECHNICAL", "SERVICE", "APPLICATION"), "superadmin": obj{"type": "boolean"}}},
			"tenant":           str("the tenant of the key: where the session acts"),
			"role":             obj{"type": "string", "enum": []string{"ADMIN", "MEMBER", "VIEWER"}, "description": "of the user's permission in tenant; absent when it holds none"},
			"permissionStatus": enum("ACTIVE", "INVITED", "ARCHIVED"),
			"admin":            obj{"type": "boolean", "description": "whether the caller administers tenant"},
			"keyId":            str("the access key the session is bound to"),
			"expiresAt":        obj{"type": "string", "format": "date-time", "description": "when the session ends (at the latest when its key does); absent for an access key"},
			"token":            str("the session token kgs_…, only in the answer of POST; send it as Authorization: Bearer"),
		}},
		"ConsoleSessionInput": obj{"type": "object", "additionalProperties": false, "description": "no body is needed (the credential is the request's Authorization); one that is sent must be {}"},
		"UsageTotals":         usageTotals,
		"TenantUsage": obj{"type": "object", "properties": obj{
			"tenant": str(""), "from": dateTime, "to": dateTime, "step": str("a Go duration, a whole number of hours"),
			"buckets": obj{"type": "array", "description": "[from, to) without gaps, oldest first", "items": bucket},
			"totals":  ref("UsageTotals"), "retention": str("how long hourly counts are kept"),
		}},
		"UserUsage": obj{"type": "object", "description": "a user's requests on the tenant's routes in the period", "properties": withProps(totalsProps, obj{
			"userId": str(""), "name": str(""), "type": enum("TECHNICAL", "SERVICE", "APPLICATION"), "status": str(""),
		})},
		"ExpiringKey": obj{"type": "object", "description": "a key (masked) with its user's name", "properties": withProps(keyProps, obj{"userName": str("")})},
		"Overview": obj{"type": "object", "description": "hourly usage counts; the last hour is the previous and the current hour", "properties": obj{
			"tenant": str(""), "tenantName": str(""), "at": dateTime,
			"lastHour": window, "lastDay": window,
			"hourly":        obj{"type": "array", "description": "lastDay hour by hour, oldest first", "items": bucket},
			"topByRequests": top, "topByRefusals": top,
			"expiringKeys": obj{"type": "object", "description": "the ACTIVE keys valid in the tenant expiring in the next 14 days, soonest first", "properties": obj{
				"before": dateTime, "items": obj{"type": "array", "items": ref("ExpiringKey")}, "total": integer,
			}},
		}},
		"Permission": obj{"type": "object", "properties": obj{
			"id": str(""),
			"links": obj{"type": "array", "description": "self, user, workspace, permissions and, for an invitation, accept",
				"items": obj{"type": "object", "properties": obj{"rel": str(""), "href": str("an admin API path")}}},
			"active":          obj{"type": "boolean", "description": "status is ACTIVE"},
			"ignoreBlacklist": obj{"type": "boolean", "description": "always false: keygate has no blacklist"},
			"count":           obj{"type": "integer", "description": "always 0: MTM's counter has no counterpart in keygate"},
			"replayed":        obj{"type": "boolean", "description": "always false: keygate does not replay permission events"},
			"user": obj{"type": "object", "properties": obj{"id": str(""), "userName": str(""), "email": str(""),
				"type": str(""), "role": str(""), "status": str(""),
				"technicalUser": obj{"type": "boolean", "description": "always true: every keygate user is a technical user"},
				"scimManaged":   obj{"type": "boolean", "description": "always false: keygate users are not provisioned by SCIM"}}},
			"workspace":   obj{"type": "object", "properties": obj{"id": str(""), "name": str(""), "status": str("")}},
			"workspaceId": str(""), "role": enum("ADMIN", "MEMBER", "VIEWER"),
			"status": enum("ACTIVE", "INVITED", "ARCHIVED"), "customerRoles": strList,
			"accessControlEntities": strList, "version": integer, "createdAt": dateTime, "updatedAt": dateTime,
			"acceptedAt": obj{"type": "string", "format": "date-time",
				"description": "when it became ACTIVE (granted, or accepted by the invitee); absent for an invitation never accepted"},
			"lastLogin": obj{"type": []string{"string", "null"}, "format": "date-time",
				"description": "when the user last authenticated in this workspace (recorded about once a minute)"},
			"invitedByUser": obj{"type": []string{"object", "null"}, "description": "who created the latest invitation",
				"properties": obj{"id": str("user id, or a trusted caller's name")}},
			"reviewedByUser": obj{"type": []string{"object", "null"}, "description": "who last changed the permission",
				"properties": obj{"id": str("user id, or a trusted caller's name")}},
		}},
		"PermissionInput": obj{"type": "object", "required": []string{"user", "workspace", "role", "status"}, "description": "a Permission as GET answers it may be sent back as is: its computed members (links, active, ignoreBlacklist, count, replayed, dates, the user's and workspace's other members) are accepted and ignored", "properties": obj{
			"user":      obj{"type": "object", "required": []string{"id"}, "properties": obj{"id": str("")}},
			"workspace": obj{"type": "object", "required": []string{"id"}, "properties": obj{"id": str("")}},
			"role":      enum("ADMIN", "MEMBER", "VIEWER"), "status": enum("ACTIVE", "INVITED", "ARCHIVED"),
			"customerRoles": strList, "accessControlEntities": strList, "version": integer,
		}},
		"HistoryEntry": obj{"type": "object", "properties": obj{
			"at": dateTime, "actor": str(""), "action": str(""), "target": str(""),
			"changes": obj{"type": "object", "description": "changed field → its value before and after",
				"additionalProperties": obj{"type": "object", "properties": obj{
					"from": anyValue("the value before; null when there was none"),
					"to":   anyValue("the value after; null when there is none"),
				}}},
		}},
		"Activity": obj{"type": "object", "properties": obj{
			"at": dateTime, "actor": str(""), "method": str(""), "path": str(""), "status": integer, "tenant": str(""),
		}},
		"UsageBucket": obj{"type": "object", "properties": obj{
			"start": dateTime, "allowed": integer, "limited": obj{"type": "integer", "description": "refused by the request limit (429)"},
			"refused": obj{"type": "integer", "description": "refused credential or permission (401, 403)"},
		}},
		"Usage": obj{"type": "object", "properties": obj{
			"userId": str(""), "from": dateTime, "to": dateTime, "step": str("a Go duration, a whole number of hours"),
			"requestLimit": obj{"type": "integer", "description": "the user's own requests per window; 0 = route default"},
			"buckets":      obj{"type": "array", "items": ref("UsageBucket"), "description": "[from, to) without gaps, oldest first"},
			"totals":       ref("UsageBucket"), "currentHour": ref("UsageBucket"),
			"retention": str("how long hourly counts are kept"),
		}},
		"Export": obj{"type": "object", "properties": obj{
			"exportedAt": dateTime, "user": ref("User"),
			"permissions": obj{"type": "array", "items": ref("Permission")},
			"keys":        obj{"type": "array", "items": ref("Key")},
			"secrets":     obj{"type": "array", "items": ref("Secret")},
			"history":     obj{"type": "array", "items": ref("HistoryEntry")},
		}},
		"BootstrapRequest": obj{"type": "object", "additionalProperties": false, "required": []string{"tenant", "user"}, "properties": obj{
			"tenant": str(""), "tenantName": str(""), "user": str("user name"), "userId": str(""),
			"keyName": str("default: bootstrap"), "expiresAt": dateTime,
		}},
		"Bootstrap": obj{"type": "object", "properties": obj{
			"tenant": ref("Tenant"), "user": ref("User"), "permission": ref("Permission"), "key": ref("Key"),
		}},
	}
}

var queryDocs = map[string]obj{
	"page":                  {"type": "integer", "minimum": 1, "default": 1, "description": "(page-1) × size may be at most " + strconv.Itoa(maxOffset)},
	"size":                  {"type": "integer", "minimum": 1, "maximum": maxPageSize, "default": defaultPageSize},
	"sort":                  {"type": "string", "description": "comma-separated fields, - prefix for descending"},
	"q":                     {"type": "string"},
	"status":                {"type": "string"},
	"type":                  {"type": "string"},
	"role":                  {"type": "string"},
	"tenant":                {"type": "string"},
	"email":                 {"type": "string"},
	"user":                  {"type": "string"},
	"includeTechnicalUsers": {"type": "boolean", "default": true, "description": "every keygate user is a technical user (TECHNICAL, SERVICE or APPLICATION): true or absent lists them all, false lists none"},
	"actor":                 {"type": "string"},
	"from":                  {"type": "string", "format": "date-time"},
	"to":                    {"type": "string", "format": "date-time"},
	"workspace":             {"type": "string", "description": "the tenant whose permission the roles are"},
	"kind":                  {"type": "string", "enum": []string{keys.DeliveryWebhook, keys.DeliveryEmail}},
	"step":                  {"type": "string", "default": "1h", "description": "a whole number of hours, e.g. 1h or 24h"},
	"top":                   {"type": "integer", "minimum": 1, "maximum": maxPageSize, "default": 5, "description": "entries of each top list"},
	"keys":                  {"type": "integer", "minimum": 1, "maximum": maxPageSize, "default": 10, "description": "expiring keys listed"},
	"by":                    {"type": "string", "enum": []string{"requests", "refusals"}, "default": "requests"},
	"before":                {"type": "string", "format": "date-time", "description": "default: 14 days from now"},
}

func problemResponse(desc string) obj {
	return obj{"description": desc, "content": obj{"application/problem+json": obj{"schema": ref("Problem")}}}
}

// buildOpenAPI derives the document from routeTable.
func buildOpenAPI() []byte {
	paths := obj{}
	for _, rt := range routeTable {
		item, _ := paths[rt.Pattern].(obj)
		if item == nil {
			item = obj{}
			paths[rt.Pattern] = item
		}
		var params []obj
		for _, seg := range strings.Split(rt.Pattern, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				params = append(params, obj{"name": seg[1 : len(seg)-1], "in": "path", "required": true, "schema": obj{"type": "string"}})
			}
		}
		for _, q := range rt.Query {
			doc, ok := queryDocs[q]
			if d, found := rt.QueryDocs[q]; found {
				doc, ok = d, true
			}
			if !ok {
				panic("admin: query parameter " + q + " of " + rt.Method + " " + rt.Pattern + " has no schema")
			}
			params = append(params, obj{"name": q, "in": "query", "schema": doc})
		}
		if rt.Pattern == "/v1/permissions" {
			params = append(params, obj{"name": "If-Match", "in": "header", "schema": obj{"type": "string"},
				"description": "optional: the permission's ETag (or *), like a version field in the body; 412 when it moved on"})
		}
		if rt.OptionalPrecondition {
			params = append(params, obj{"name": "If-Match", "in": "header", "schema": obj{"type": "string"},
				"description": "optional: the resource's ETag (or *); 412 when it moved on"})
		}
		if (rt.Method == http.MethodPatch || rt.Method == http.MethodDelete || (rt.Method == http.MethodPut && rt.Tag != "roles")) && !rt.NoPrecondition {
			params = append(params, obj{"name": "If-Match", "in": "header", "schema": obj{"type": "string"},
				"description": "the resource's ETag, or *; required unless the body has version"})
		}
		status := rt.Status
		if status == 0 {
			status = http.StatusOK
		}
		responses := obj{}
		switch {
		case rt.Pattern == "/v1/openapi.json":
			responses["200"] = obj{"description": "the OpenAPI document", "content": obj{"application/json": obj{}}}
		case rt.Pattern == "/v1/schemas/tenant-file.json":
			responses["200"] = obj{"description": "the JSON Schema (2020-12) of the tenant file", "content": obj{"application/schema+json": obj{}}}
		case status == http.StatusNoContent:
			responses["204"] = obj{"description": "done"}
		case rt.Auth == authVerify:
			responses["200"] = obj{"description": "the verdict (valid or not); not wrapped in the envelope",
				"content": obj{"application/json": obj{"schema": ref(rt.Response)}}}
		default:
			data := obj{}
			if rt.Response != "" {
				data = ref(rt.Response)
				if rt.List {
					data = obj{"type": "array", "items": ref(rt.Response)}
				}
			}
			responses[strconv.Itoa(status)] = obj{"description": "OK", "content": obj{"application/json": obj{"schema": obj{
				"allOf": []obj{ref("Envelope"), {"type": "object", "properties": obj{"data": data}}},
			}}}}
			if rt.canonical() == "/v1/permissions" {
				responses["201"] = responses["200"]
			}
			if rt.Pattern == "/v1/imports" {
				responses["200"] = responses["201"] // nothing created: a dry run, or all skipped
			}
			if rt.Pattern == "/v1/users/{id}" && (rt.Method == http.MethodDelete || rt.Method == http.MethodPatch) {
				// The second step of a deletion did not run now (the sweep finishes it).
				responses["202"] = responses["200"]
			}
		}
		for code, desc := range errorResponses(rt) {
			responses[strconv.Itoa(code)] = problemResponse(desc)
			if rt.Request == fileBody && code == http.StatusUnprocessableEntity {
				responses["422"] = obj{"description": desc, "content": obj{"application/problem+json": obj{"schema": ref("ImportProblem")}}}
			}
		}
		op := obj{
			"operationId": operationID(rt),
			"summary":     rt.Summary,
			"tags":        []string{rt.Tag},
			"responses":   responses,
		}
		if rt.Alias != "" {
			op["description"] = "Serves " + rt.Method + " " + rt.Alias + " under the path MTM clients call (seed 001): same handler, same answers."
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch rt.Request {
		case "":
		case fileBody:
			op["requestBody"] = obj{"required": true, "description": "the file, as the peer exports it (YAML, JSON or CSV)",
				"content": obj{"*/*": obj{"schema": obj{"type": "string", "format": "binary", "maxLength": 8 << 20}}}}
		default:
			op["requestBody"] = obj{"required": rt.Method != http.MethodPost || !(rt.OptionalBody || strings.HasSuffix(rt.Pattern, "/replace") || rt.Pattern == "/v1/console/session"),
				"content": obj{"application/json": obj{"schema": ref(rt.Request)}}}
		}
		switch rt.Auth {
		case authPublic:
			op["security"] = []obj{}
		case authTrusted:
			op["security"] = []obj{}
			op["description"] = "Only for trusted local callers (Caddy's admin endpoint, the CLI); 404 otherwise."
		}
		item[strings.ToLower(rt.Method)] = op
	}
	doc := obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":       "keygate admin API",
			"version":     "1",
			"description": "Manage tenants, users, roles, permissions, access keys and signing secrets.",
		},
		"paths": paths,
		"components": obj{
			"schemas": schemas(),
			"securitySchemes": obj{
				"bearer": obj{"type": "http", "scheme": "bearer", "description": "a keygate access key kg_…, or an access token from the token endpoint (when token exchange is configured)"},
				"apiKey": obj{"type": "apiKey", "in": "header", "name": "X-Api-Key"},
			},
		},
		"security": []obj{{"bearer": []string{}}, {"apiKey": []string{}}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("admin: building the OpenAPI document: " + err.Error())
	}
	return b
}

// errorResponses lists the problem statuses a route can answer and why.
func errorResponses(rt route) map[int]string {
	// keygate_admin answers 429 before any route when the client has used
	// up its auth_failures budget (failed authentications, shared with the
	// gateway), whatever it asks for.
	out := map[int]string{http.StatusTooManyRequests: "the client made too many failed authentications " +
		"(keygate's auth_failures throttle, shared with the gateway): retry after Retry-After seconds"}
	if rt.Auth == authPublic {
		return out
	}
	if rt.Auth == authVerify {
		out[http.StatusBadRequest] = "invalid input: not exactly one of key and token, consume not 0 or 1; errors lists the fields"
		out[http.StatusUnauthorized] = "the caller's own access key is missing or invalid"
		out[http.StatusForbidden] = "the caller has neither role ADMIN nor customer role " + VerifyRole + " in the tenant (nor is a superadmin)"
		out[http.StatusRequestEntityTooLarge] = "body too large"
		out[http.StatusUnsupportedMediaType] = "body is not application/json"
		out[http.StatusServiceUnavailable] = "key store or rate limiter unavailable"
		out[http.StatusInternalServerError] = "unexpected error (logged)"
		return out
	}
	out[http.StatusInternalServerError] = "unexpected error (logged)"
	if rt.Auth == authTrusted {
		out[http.StatusNotFound] = "not a trusted local caller"
	} else {
		out[http.StatusUnauthorized] = "missing or invalid access key: unknown, wrong, expired, disabled or revoked, " +
			"its user not ACTIVE or of a type that may not use access keys, or its tenant ARCHIVED"
		out[http.StatusNotFound] = "not found, or not visible to the caller"
		out[http.StatusServiceUnavailable] = "store unavailable, or master key not configured"
	}
	switch rt.Auth {
	case authAdmin:
		out[http.StatusForbidden] = "the caller administers no tenant, or not this object's: " +
			"a user's keys, secrets and record are managed by the administrators of its primary tenant; " +
			"creating or reactivating a signing secret and changing a user's type need an administrator of every tenant " +
			"in which the user holds an ACTIVE permission (or a superadmin)"
	case authRead:
		out[http.StatusForbidden] = "the caller neither administers a tenant nor holds an ACTIVE permission in the tenant of its key"
	case authAny:
		if rt.Method == http.MethodPost {
			out[http.StatusForbidden] = "SERVICE and APPLICATION users cannot sign in to the console (their keys keep working against /v1), " +
				"nor can users without an ACTIVE permission in their key's tenant"
		}
	}
	if rt.Auth == authAny {
		out[http.StatusBadRequest] = "the request already carries a console session, or comes from a trusted local caller"
	}
	mutating := (rt.Method == http.MethodPatch || rt.Method == http.MethodDelete || rt.Method == http.MethodPut) && !rt.NoPrecondition
	if rt.Request != "" || len(rt.Query) > 0 || mutating || strings.Contains(rt.Pattern, "{roleKey}") || rt.Tag == "roles" {
		out[http.StatusBadRequest] = "invalid input (body, query parameter such as an unknown sort field, " +
			"path value or If-Match); errors lists the fields"
	}
	if rt.Request != "" || rt.Method != http.MethodGet {
		out[http.StatusConflict] = "conflict with the current state: a taken name or id, an illegal state change, " +
			"an ARCHIVED tenant, a credential the user's type may not hold, a third live secret"
	}
	switch rt.Request {
	case "":
	case fileBody:
		out[http.StatusRequestEntityTooLarge] = "file too large"
		out[http.StatusUnprocessableEntity] = "the file is not of that format, or (without continue) items failed and nothing was written: " +
			"errors names each failed item (field: where in the file) and import holds the whole report"
	default:
		out[http.StatusRequestEntityTooLarge] = "body too large"
		out[http.StatusUnsupportedMediaType] = "body is not application/json"
	}
	if mutating || rt.OptionalPrecondition || rt.canonical() == "/v1/permissions" {
		out[http.StatusPreconditionFailed] = "If-Match or version does not match"
	}
	if mutating {
		if rt.Tag != "roles" {
			out[http.StatusPreconditionRequired] = "If-Match or version required"
		}
	}
	return out
}

// fileBody is a route's Request when its body is a file of any type.
const fileBody = "file"

// operationID derives a stable operation id such as "GET_v1_users_id".
func operationID(rt route) string {
	r := strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_")
	return rt.Method + r.Replace(rt.Pattern)
}
