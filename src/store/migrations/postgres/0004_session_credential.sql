-- A session ends when its user's password or role changes: `User::credential` at sign-in.
-- Sessions from before this column have none and end at once (one more sign-in).
ALTER TABLE alertcall.sessions ADD COLUMN credential text NOT NULL DEFAULT '';
