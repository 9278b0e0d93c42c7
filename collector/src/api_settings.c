/* api_settings.c - GET/PUT /api/settings (the fleet) and /api/devices/{id}/settings.
 *
 * The PUT body is hostile input: exactly {"settings": {"SECTION.KEY": "value", ...}} (a list
 * of strings for agent.allow), at most API_SETTINGS_BODY_MAX bytes. Names, repeats, lengths
 * and the document's size are checked here (store_settings_put, with the wire's rules); the
 * values are judged by each agent with its config parser, which reports a refusal back
 * (GET .../settings "rejected"). Written through a short-lived writable handle, like captures. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "store.h"

void api_settings_get(api_ctx *ctx, const api_request *r, api_response *out)
{
    json_t *doc = NULL;
    int rc = store_q_settings(ctx->ro, r->route == API_DEVICE_SETTINGS ? r->device : NULL, &doc);
    api_from_store(ctx, out, rc, doc, "device");
}

void api_settings_put(api_ctx *ctx, const api_request *r, const char *body, size_t len, int64_t now_ms,
                      api_response *out)
{
    memset(out, 0, sizeof(*out));
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    json_t *set = json_is_object(o) ? json_object_get(o, "settings") : NULL;
    if (!set || json_object_size(o) != 1) {
        char err[200];
        snprintf(err, sizeof(err), "body: expected {\"settings\": {\"SECTION.KEY\": \"value\", ...}}%s%.100s",
                 o ? "" : ": ", o ? "" : je.text);
        json_decref(o);
        api_error(out, 400, err);
        return;
    }
    char err[200];
    coll_store *w = ctx->db_path ? store_open(ctx->db_path, err, sizeof(err)) : NULL;
    if (!w) {
        json_decref(o);
        api_error(out, 503, "the database cannot be written now");
        return;
    }
    const char *device = r->route == API_DEVICE_SETTINGS ? r->device : NULL;
    int64_t version = 0;
    int rc = store_settings_put(w, device, set, now_ms, &version, err, sizeof(err));
    json_decref(o);
    json_t *doc = NULL;
    if (rc == STORE_Q_OK)
        rc = store_q_settings(w, device, &doc); /* the new state, read back through the writer */
    store_close(w);
    if (rc == STORE_Q_BADARG) {
        api_error(out, 400, err);
        return;
    }
    api_from_store(ctx, out, rc, doc, "device");
}
