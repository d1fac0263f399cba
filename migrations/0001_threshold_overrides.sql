ALTER TABLE "threshold_changes" ALTER COLUMN "old_threshold" SET DATA TYPE double precision;--> statement-breakpoint
ALTER TABLE "threshold_changes" ALTER COLUMN "new_threshold" SET DATA TYPE double precision;--> statement-breakpoint
ALTER TABLE "threshold_changes" ADD COLUMN "bundle_version" text;--> statement-breakpoint
ALTER TABLE "threshold_changes" ADD COLUMN "removed" boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX "threshold_changes_bundle_language_idx" ON "threshold_changes" USING btree ("bundle_version","language","id");--> statement-breakpoint
ALTER TABLE "threshold_changes" ADD CONSTRAINT "threshold_changes_pooled_not_removed_check" CHECK (not ("threshold_changes"."removed" and "threshold_changes"."language" = 'pooled'));