package keys

import (
	"context"
	"fmt"
	"time"
)

// Console sessions: table "sessions", indexed per user (u:<user>:sessions,
// by creation) and by expiry over all users (sessions:by:expiry, for
// PurgeSessions). They are not versioned and write no history: the
// activity log records the sign-in call.

const (
	tblSessions      = "sessions"
	ixSessionsExpiry = "sessions:by:expiry"
)

func sessionIndex(userID string) string { return "u:" + userID + ":sessions" }

// CreateSession stores a new console session. The user must be ACTIVE and
// the session's key must be the user's.
func (s *kvStore) CreateSession(ctx context.Context, sess Session, _ string) (Session, error) {
	v := &ValidationError{}
	validID(v, "id", sess.ID)
	required(v, "userId", sess.UserID)
	required(v, "keyId", sess.KeyID)
	required(v, "tenant", sess.TenantID)
	if len(sess.Hash) == 0 {
		v.Add("hash", "is required")
	}
	if sess.ExpiresAt.IsZero() {
		v.Add("expiresAt", "is required")
	}
	if err := v.Err(); err != nil {
		return Session{}, err
	}
	sess.ExpiresAt = sess.ExpiresAt.UTC()
	err := s.b.Update(ctx, func(tx Tx) error {
		u, err := getJSON[User](tx, tblUsers, sess.UserID, "user "+sess.UserID)
		if err != nil {
			return err
		}
		if u.Status != UserActive {
			return fmt.Errorf("user %s is %s: %w", u.ID, u.Status, ErrConflict)
		}
		k, err := getJSON[Key](tx, tblKeys, sess.KeyID, "key "+sess.KeyID)
		if err != nil {
			return err
		}
		if k.UserID != sess.UserID || k.TenantID != sess.TenantID {
			return fieldError("keyId", "is not a key of the user in the tenant")
		}
		if ok, err := exists(tx, tblSessions, sess.ID); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("session %s exists: %w", sess.ID, ErrConflict)
		}
		sess.CreatedAt = s.clock()
		if err := putJSON(tx, tblSessions, sess.ID, sess); err != nil {
			return err
		}
		if err := tx.IndexAdd(sessionIndex(sess.UserID), timeKey(sess.CreatedAt), sess.ID); err != nil {
			return fmt.Errorf("indexing session: %w", err)
		}
		if err := tx.IndexAdd(ixSessionsExpiry, timeKey(sess.ExpiresAt), sess.ID); err != nil {
			return fmt.Errorf("indexing session: %w", err)
		}
		return nil
	})
	return sess, err
}

// GetSession returns a console session or ErrNotFound.
func (s *kvStore) GetSession(ctx context.Context, id string) (Session, error) {
	var out Session
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = getJSON[Session](tx, tblSessions, id, "session "+id)
		return err
	})
	return out, err
}

// DeleteSession removes a console session; a missing one is ErrNotFound.
func (s *kvStore) DeleteSession(ctx context.Context, id string) error {
	return s.b.Update(ctx, func(tx Tx) error {
		sess, err := getJSON[Session](tx, tblSessions, id, "session "+id)
		if err != nil {
			return err
		}
		return deleteSessionRecord(tx, &sess)
	})
}

// deleteSessionRecord removes a session and its index entries.
func deleteSessionRecord(tx Tx, sess *Session) error {
	if err := tx.IndexRemove(sessionIndex(sess.UserID), timeKey(sess.CreatedAt), sess.ID); err != nil {
		return fmt.Errorf("updating session index: %w", err)
	}
	if err := tx.IndexRemove(ixSessionsExpiry, timeKey(sess.ExpiresAt), sess.ID); err != nil {
		return fmt.Errorf("updating session index: %w", err)
	}
	if err := tx.Delete(tblSessions, sess.ID); err != nil {
		return fmt.Errorf("deleting session %s: %w", sess.ID, err)
	}
	return nil
}

// dropUserSessions removes every console session of a user.
func dropUserSessions(tx Tx, userID string) error {
	ids, err := allIDs(tx, sessionIndex(userID), false)
	if err != nil {
		return err
	}
	sessions, err := getManyJSON[Session](tx, tblSessions, ids)
	if err != nil {
		return err
	}
	for i := range sessions {
		if err := deleteSessionRecord(tx, &sessions[i]); err != nil {
			return err
		}
	}
	return tx.IndexDrop(sessionIndex(userID))
}

// PurgeSessions removes the console sessions that expired before before.
func (s *kvStore) PurgeSessions(ctx context.Context, before time.Time) (int, error) {
	return purgeOldest(ctx, s, ixSessionsExpiry, tblSessions, "session", before,
		func(sess *Session) time.Time { return sess.ExpiresAt },
		func(tx Tx, _ string, sess *Session) error { return deleteSessionRecord(tx, sess) })
}
