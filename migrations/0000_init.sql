CREATE TABLE "f1_windows" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "f1_windows_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"language" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"window_end" timestamp with time zone NOT NULL,
	"n" integer NOT NULL,
	"tp" integer NOT NULL,
	"fp" integer NOT NULL,
	"fn" integer NOT NULL,
	"tn" integer NOT NULL,
	"precision" real,
	"recall" real,
	"f1" real,
	"baseline" real,
	"drift" real,
	"computed_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "feedback" (
	"prediction_id" text PRIMARY KEY NOT NULL,
	"label" boolean NOT NULL,
	"source" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "predictions" (
	"id" text PRIMARY KEY NOT NULL,
	"request_id" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"language" text NOT NULL,
	"language_source" text NOT NULL,
	"score" real NOT NULL,
	"threshold" real NOT NULL,
	"label" boolean NOT NULL,
	"bundle_version" text NOT NULL,
	"text_sha256" text NOT NULL,
	"text" text,
	CONSTRAINT "predictions_language_source_check" CHECK ("predictions"."language_source" in ('hint', 'detected', 'fallback'))
);
--> statement-breakpoint
CREATE TABLE "threshold_changes" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "threshold_changes_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"created_at" timestamp with time zone NOT NULL,
	"actor" text NOT NULL,
	"language" text NOT NULL,
	"old_threshold" real,
	"new_threshold" real NOT NULL,
	"reason" text
);
--> statement-breakpoint
ALTER TABLE "feedback" ADD CONSTRAINT "feedback_prediction_id_predictions_id_fk" FOREIGN KEY ("prediction_id") REFERENCES "public"."predictions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "f1_windows_language_window_idx" ON "f1_windows" USING btree ("language","window_start","window_end");--> statement-breakpoint
CREATE INDEX "f1_windows_window_end_idx" ON "f1_windows" USING btree ("window_end");--> statement-breakpoint
CREATE INDEX "predictions_created_at_idx" ON "predictions" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "predictions_language_created_at_idx" ON "predictions" USING btree ("language","created_at");--> statement-breakpoint
CREATE INDEX "threshold_changes_created_at_idx" ON "threshold_changes" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "threshold_changes_language_created_at_idx" ON "threshold_changes" USING btree ("language","created_at");