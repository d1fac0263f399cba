/** Variables every handler can read (set by middleware in src/http/middleware.ts). */
import 'hono';

declare module 'hono' {
  interface ContextVariableMap {
    /** request id: the caller's X-Request-Id when it is sane, else a new UUID */
    requestId: string;
    /** status for validation errors: 422 by default, 400 on the compatibility routes */
    validationStatus: 400 | 422;
  }
}
