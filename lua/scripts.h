/*
 * The Lua scripts of lua/ (every .lua file), embedded byte for byte at build time (cmake/embed_lua.cmake).
 * Every write to Redis is one of these scripts (DESIGN.md rule 1), called with EVALSHA; the
 * front end (store.c) and cimap-admin load them all on every (re)connect.
 */
#ifndef CIMAP_LUA_SCRIPTS_H
#define CIMAP_LUA_SCRIPTS_H

#include <stddef.h>

#include "lua_scripts_gen.h" /* enum lua_script_id: LUA_SCRIPT_<FILE NAME>, LUA_SCRIPT_COUNT */

struct lua_script {
    const char *name;  /* file name without ".lua" */
    const char *body;  /* exact file bytes, NUL-terminated for convenience */
    size_t len;        /* body length in bytes */
    const char *sha1;  /* 40 lowercase hex digits, as SCRIPT LOAD answers */
};

/* Indexed by enum lua_script_id; static storage, never freed. */
extern const struct lua_script lua_scripts[LUA_SCRIPT_COUNT];

/* Returns the script called name, or NULL. */
const struct lua_script *lua_script_find(const char *name);

#endif
