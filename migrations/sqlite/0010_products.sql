-- Product cards an answer showed (JSON: name, url, price, currency, imageUrl, inStock), kept
-- with the message so a reload or another tab shows the same cards.
ALTER TABLE messages ADD COLUMN products TEXT;
