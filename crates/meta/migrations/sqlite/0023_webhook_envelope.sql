-- What a webhook's deliveries look like: `cloudevents` (a CloudEvents 1.0
-- document, the default) or `distribution` (CNCF Distribution's
-- notification envelope, for consumers written against it). Webhooks made
-- before this column existed keep the CloudEvents they were receiving.
ALTER TABLE webhooks ADD COLUMN envelope TEXT NOT NULL DEFAULT 'cloudevents';
