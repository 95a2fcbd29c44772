/*
 * startup: what a front end does once Redis first answers: check the keyspace schema (refuse to
 * run on a newer one: exit status 78) and, with --demo-data, create the demo user if absent.
 * Runs while the listeners already accept: clients meanwhile get NO [UNAVAILABLE] from Redis.
 */
#ifndef CIMAP_STARTUP_H
#define CIMAP_STARTUP_H

#include <stdbool.h>

struct frontend;

#define DEMO_USER "demouser"
#define DEMO_PASSWORD "demopass"

/* Starts the sequence (polls until the store is ready). Returns 0, or -1 on allocation failure. */
int startup_begin(struct frontend *fe);

/* Cancels an unfinished sequence and frees it. Safe to call when finished. */
void startup_end(void);

/* True once schema_init.lua answered a schema version this release can serve (/readyz). */
bool startup_schema_accepted(void);

#endif
