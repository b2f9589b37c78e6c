-- The visitor's rating of an assistant or operator message: 'up' or 'down' (NULL: none, or
-- cleared). Kept on the message so every tab and a later visit show it.
ALTER TABLE messages ADD COLUMN feedback TEXT CHECK (feedback IN ('up', 'down'));

-- Who the host page says the visitor is (`window.AIAChat.identify`). UNVERIFIED: any script on
-- the page can claim any name or address, so whatever shows them must say so.
ALTER TABLE sessions ADD COLUMN visitor_name TEXT;
ALTER TABLE sessions ADD COLUMN visitor_email TEXT;
