/* The web page's files, built into the collector (generated from collector/web/ and uPlot's
 * dist files by collector/web/gen_assets.py at build time), so the page works with no internet
 * and no files beside the binary. */
#ifndef ET_WEB_ASSETS_H
#define ET_WEB_ASSETS_H

#include <stddef.h>

/* Looks up the asset for an HTTP request path ("/" gives index.html, "/assets/app.js" ...).
 * Returns 0 and sets data/len/content_type (static storage, never freed), or -1 when no asset
 * has that path. Only exact paths match: no directory walking, so a hostile path can only miss. */
int web_asset_find(const char *path, const unsigned char **data, size_t *len, const char **content_type);

/* A short hash of every asset's bytes, for an ETag / cache-busting: it changes with any asset. */
extern const char web_assets_version[];

#endif
