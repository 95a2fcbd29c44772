/*
 * demo: the demo user's mailboxes and messages (--demo-data), as a plan of script calls
 * (mbx_create.lua, append.lua) that startup.c runs in order once the user record is created.
 */
#ifndef CIMAP_DEMO_H
#define CIMAP_DEMO_H

#include <stddef.h>

#include "lua/scripts.h"

struct demo_plan;

/* Prepares every call for the namespace nsid (messages parsed here). NULL on failure (logged). */
struct demo_plan *demo_plan_new(const char *nsid);

/* Number of calls, to run in order. */
size_t demo_plan_count(const struct demo_plan *p);

/* Call i (argv = nkeys keys then arguments); valid until demo_plan_free. */
void demo_plan_call(const struct demo_plan *p, size_t i, enum lua_script_id *script_r, int *nkeys_r,
                    int *argc_r, const char *const **argv_r, const size_t **argvlen_r);

/* Frees the plan; sets *p to NULL. NULL-safe. */
void demo_plan_free(struct demo_plan **p);

#endif
