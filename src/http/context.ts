/** Variables every handler can read (set by middleware in src/http/middleware.ts). */
import 'hono';

declare module 'hono' {
  interface ContextVariableMap {
    /** request id: the caller's X-Request-Id when it is sane, else a new UUID */
    requestId: string;
    /** whose error shape and status codes this route answers in (native by default) */
    errorDialect: import('./errors.js').ErrorDialect;
    /** rewrites the core's field names in error messages to the caller's (texts[0] -> input[0]) */
    renameFields: (message: string) => string;
  }
}
