/*
 * Lookup over the generated script table. The table itself is generated from lua/ (every .lua file) by
 * cmake/embed_lua.cmake so a script's bytes and SHA1 can never drift from the file.
 */
#include "lua/scripts.h"

#include <string.h>

const struct lua_script *lua_script_find(const char *name)
{
    for (size_t i = 0; i < LUA_SCRIPT_COUNT; i++) {
        if (strcmp(lua_scripts[i].name, name) == 0)
            return &lua_scripts[i];
    }
    return NULL;
}
