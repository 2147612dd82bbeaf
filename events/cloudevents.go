package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/keygate/keygate/keys"
)

// DefaultSource is the CloudEvents source of keygate's events.
const DefaultSource = "/keygate"

// ContentType is the media type of a CloudEvents JSON structured-mode body.
const ContentType = "application/cloudevents+json; charset=utf-8"

// CloudEvent is an event in CloudEvents 1.0 JSON structured mode, with the
// extension attributes tenant and actor.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Tenant          string          `json:"tenant,omitempty"`
	Actor           string          `json:"actor,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// Render returns e as a CloudEvents JSON document.
func Render(e keys.Event, source string) ([]byte, error) {
	if source == "" {
		source = DefaultSource
	}
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	b, err := json.Marshal(CloudEvent{
		SpecVersion: "1.0", ID: e.ID, Source: source, Type: e.Type, Subject: e.Subject,
		Time: e.Time.UTC(), DataContentType: "application/json", Tenant: e.Tenant, Actor: e.Actor, Data: data,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", e.ID, err)
	}
	return b, nil
}
