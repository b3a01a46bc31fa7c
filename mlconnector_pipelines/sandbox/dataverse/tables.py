"""The tables the simulator serves: columns and lookups of shared/specs/dataverse-sales.entities.json.

Columns are `name:T` with T one of S (Edm.String), G (Edm.Guid), I (Edm.Int32), L (Edm.Int64),
B (Edm.Boolean), T (Edm.DateTimeOffset), D (Edm.Date), M (Money) and N (Decimal), both Edm.Decimal;
a trailing `!` marks a column no write may set. A lookup is read as `_<attribute>_value` and written
through one single-valued navigation property per target table (a customer lookup has two). The
webhook registration tables (serviceendpoint and the sdkmessage* tables) and the organization's
currencies (transactioncurrency) follow their Dataverse table references; the spec lists neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

EDM = {
    "S": "Edm.String",
    "G": "Edm.Guid",
    "I": "Edm.Int32",
    "L": "Edm.Int64",
    "B": "Edm.Boolean",
    "T": "Edm.DateTimeOffset",
    "D": "Edm.Date",
    "M": "Edm.Decimal",
    "N": "Edm.Decimal",
}
NAMESPACE = "Microsoft.Dynamics.CRM"

# Lookup targets the simulator keeps only as ids (a bind to them is checked, the tables are not served).
REFERENCE_SETS = {
    "systemuser": "systemusers",
    "team": "teams",
    "pricelevel": "pricelevels",
    "uom": "uoms",
    "uomschedule": "uomschedules",
    "plugintype": "plugintypes",
}


@dataclass(frozen=True)
class Lookup:
    attribute: str
    targets: tuple[str, ...]  # logical names of the tables it may point at
    navigations: tuple[str, ...]  # the single-valued navigation property per target; () = not writable

    @property
    def property(self) -> str:
        return f"_{self.attribute}_value"

    def target_of(self, navigation: str) -> str:
        return self.targets[self.navigations.index(navigation)]

    def navigation_to(self, target: str) -> str | None:
        return self.navigations[self.targets.index(target)] if target in self.targets and self.navigations else None


@dataclass(frozen=True)
class Lines:
    """A one-to-many relationship: a collection-valued navigation property of the parent."""

    navigation: str
    child_set: str
    child_attribute: str  # the child's lookup to the parent


@dataclass(frozen=True)
class Table:
    entity_set: str
    logical: str
    primary_name: str
    columns: str
    lookups: tuple[tuple, ...] = ()
    states: dict[int, str] = field(default_factory=dict)
    statuses: dict[int, tuple[str, int]] = field(default_factory=dict)
    collections: tuple[Lines, ...] = ()
    read_only: bool = False  # no create, update or delete through the Web API (the sdkmessage catalogue, currencies)

    @property
    def key(self) -> str:
        return f"{self.logical}id"

    @property
    def type_name(self) -> str:
        return f"{NAMESPACE}.{self.logical}"

    @cached_property
    def types(self) -> dict[str, str]:
        """Every column by name, its Edm type."""
        return {spec.split(":")[0]: EDM[spec.split(":")[1][0]] for spec in self.columns.split()}

    @cached_property
    def money(self) -> frozenset[str]:
        return frozenset(s.split(":")[0] for s in self.columns.split() if s.split(":")[1][0] == "M")

    @cached_property
    def decimals(self) -> frozenset[str]:
        return frozenset(name for name, edm in self.types.items() if edm == "Edm.Decimal")

    @cached_property
    def computed(self) -> frozenset[str]:
        """Columns the service sets: a write naming them is ignored."""
        return frozenset(s.split(":")[0] for s in self.columns.split() if s.endswith("!"))

    @cached_property
    def lookup(self) -> dict[str, Lookup]:
        return {spec[0]: Lookup(*spec) for spec in self.lookups}

    @cached_property
    def navigation(self) -> dict[str, Lookup]:
        """Single-valued navigation property -> its lookup."""
        return {nav: lk for lk in self.lookup.values() for nav in lk.navigations}

    @cached_property
    def lines(self) -> dict[str, Lines]:
        return {c.navigation: c for c in self.collections}

    @cached_property
    def properties(self) -> dict[str, str]:
        """What a row answers, by Web API property name: columns, `_x_value` lookups, `<money>_base` twins."""
        props = dict(self.types)
        props |= {lk.property: "Edm.Guid" for lk in self.lookup.values()}
        props |= {f"{name}_base": "Edm.Decimal" for name in sorted(self.money)}
        return props

    def default_status(self, state: int) -> int | None:
        return next((status for status, (_, of) in self.statuses.items() if of == state), None)


# Columns this organisation added for the product's write-back (custom columns carry the publisher's prefix,
# here `mlc_`): where BC's order and invoice numbers and status land on the Sales quote or order.
WRITE_BACK_COLUMNS = " mlc_bcordernumber:S mlc_bcinvoicenumber:S mlc_bcstatus:S"

SALES_TABLES = (
    Table(
        "opportunities",
        "opportunity",
        "name",
        columns="opportunityid:G name:S statecode:I statuscode:I estimatedvalue:M estimatedclosedate:D actualvalue:M actualclosedate:D isrevenuesystemcalculated:B closeprobability:I totalamount:M totallineitemamount:M totaldiscountamount:M totaltax:M discountamount:M discountpercentage:N exchangerate:N! description:S createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("customerid", ("account", "contact"), ("customerid_account", "customerid_contact")),
            ("parentaccountid", ("account",), ("parentaccountid",)),
            ("parentcontactid", ("contact",), ("parentcontactid",)),
            ("pricelevelid", ("pricelevel",), ("pricelevelid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("accountid", ("account",), ()),
            ("contactid", ("contact",), ()),
            ("ownerid", ("systemuser", "team"), ("ownerid",)),
        ),
        states={0: "Open", 1: "Won", 2: "Lost"},
        statuses={1: ("In Progress", 0), 2: ("On Hold", 0), 3: ("Won", 1), 4: ("Canceled", 2), 5: ("Out-Sold", 2)},
        collections=(
            Lines("opportunity_quotes", "quotes", "opportunityid"),
            Lines("opportunity_sales_orders", "salesorders", "opportunityid"),
            Lines("opportunity_invoices", "invoices", "opportunityid"),
        ),
    ),
    Table(
        "quotes",
        "quote",
        "name",
        columns="quoteid:G name:S quotenumber:S revisionnumber:I! statecode:I statuscode:I totalamount:M totallineitemamount:M totaldiscountamount:M totalamountlessfreight:M totaltax:M discountamount:M freightamount:M effectivefrom:T effectiveto:T closedon:D paymenttermscode:I shippingmethodcode:I billto_line1:S billto_line2:S billto_city:S billto_stateorprovince:S billto_postalcode:S billto_country:S shipto_line1:S shipto_line2:S shipto_city:S shipto_stateorprovince:S shipto_postalcode:S shipto_country:S emailaddress:S createdon:T! modifiedon:T! versionnumber:L!"
        + WRITE_BACK_COLUMNS,
        lookups=(
            ("customerid", ("account", "contact"), ("customerid_account", "customerid_contact")),
            ("opportunityid", ("opportunity",), ("opportunityid",)),
            ("pricelevelid", ("pricelevel",), ("pricelevelid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("ownerid", ("systemuser", "team"), ("ownerid",)),
        ),
        states={0: "Draft", 1: "Active", 2: "Won", 3: "Closed"},
        statuses={
            1: ("In Progress", 0),
            2: ("In Progress", 1),
            3: ("Open", 1),
            4: ("Won", 2),
            5: ("Lost", 3),
            6: ("Canceled", 3),
            7: ("Revised", 3),
        },
        collections=(Lines("quote_details", "quotedetails", "quoteid"),),
    ),
    Table(
        "quotedetails",
        "quotedetail",
        "quotedetailname",
        columns="quotedetailid:G quotedetailname:S productnumber:S! productdescription:S productname:S isproductoverridden:B ispriceoverridden:B quantity:N priceperunit:M baseamount:M manualdiscountamount:M volumediscountamount:M! tax:M extendedamount:M lineitemnumber:I sequencenumber:I description:S requestdeliveryby:T createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("quoteid", ("quote",), ("quoteid",)),
            ("productid", ("product",), ("productid",)),
            ("uomid", ("uom",), ("uomid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
        ),
        states={},
        statuses={},
    ),
    Table(
        "salesorders",
        "salesorder",
        "name",
        columns="salesorderid:G name:S ordernumber:S statecode:I statuscode:I totalamount:M totallineitemamount:M totaldiscountamount:M totalamountlessfreight:M totaltax:M discountamount:M freightamount:M ispricelocked:B submitdate:T datefulfilled:T requestdeliveryby:T paymenttermscode:I shippingmethodcode:I billto_line1:S billto_line2:S billto_city:S billto_stateorprovince:S billto_postalcode:S billto_country:S shipto_line1:S shipto_line2:S shipto_city:S shipto_stateorprovince:S shipto_postalcode:S shipto_country:S emailaddress:S createdon:T! modifiedon:T! versionnumber:L!"
        + WRITE_BACK_COLUMNS,
        lookups=(
            ("customerid", ("account", "contact"), ("customerid_account", "customerid_contact")),
            ("quoteid", ("quote",), ("quoteid",)),
            ("opportunityid", ("opportunity",), ("opportunityid",)),
            ("pricelevelid", ("pricelevel",), ("pricelevelid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("ownerid", ("systemuser", "team"), ("ownerid",)),
        ),
        states={0: "Active", 1: "Submitted", 2: "Canceled", 3: "Fulfilled", 4: "Invoiced"},
        statuses={
            1: ("New", 0),
            2: ("Pending", 0),
            3: ("In Progress", 1),
            4: ("No Money", 2),
            100001: ("Complete", 3),
            100002: ("Partial", 3),
            100003: ("Invoiced", 4),
        },
        collections=(Lines("order_details", "salesorderdetails", "salesorderid"),),
    ),
    Table(
        "salesorderdetails",
        "salesorderdetail",
        "salesorderdetailname",
        columns="salesorderdetailid:G salesorderdetailname:S productnumber:S! productdescription:S productname:S isproductoverridden:B ispriceoverridden:B quantity:N priceperunit:M baseamount:M manualdiscountamount:M volumediscountamount:M! tax:M extendedamount:M lineitemnumber:I sequencenumber:I description:S quantityshipped:N quantitybackordered:N quantitycancelled:N requestdeliveryby:T createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("salesorderid", ("salesorder",), ("salesorderid",)),
            ("productid", ("product",), ("productid",)),
            ("uomid", ("uom",), ("uomid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("quotedetailid", ("quotedetail",), ("quotedetailid",)),
            ("salesrepid", ("systemuser",), ("salesrepid",)),
        ),
        states={},
        statuses={},
    ),
    Table(
        "invoices",
        "invoice",
        "name",
        columns="invoiceid:G name:S invoicenumber:S statecode:I statuscode:I totalamount:M totallineitemamount:M totaldiscountamount:M totalamountlessfreight:M totaltax:M discountamount:M freightamount:M duedate:D datedelivered:D ispricelocked:B lastbackofficesubmit:T paymenttermscode:I shippingmethodcode:I billto_line1:S billto_line2:S billto_city:S billto_stateorprovince:S billto_postalcode:S billto_country:S shipto_line1:S shipto_line2:S shipto_city:S shipto_stateorprovince:S shipto_postalcode:S shipto_country:S emailaddress:S createdon:T! modifiedon:T! versionnumber:L!"
        + WRITE_BACK_COLUMNS,
        lookups=(
            ("customerid", ("account", "contact"), ("customerid_account", "customerid_contact")),
            ("salesorderid", ("salesorder",), ("salesorderid",)),
            ("opportunityid", ("opportunity",), ("opportunityid",)),
            ("pricelevelid", ("pricelevel",), ("pricelevelid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("ownerid", ("systemuser", "team"), ("ownerid",)),
        ),
        states={0: "Active", 1: "Closed (deprecated)", 2: "Paid", 3: "Canceled"},
        statuses={
            1: ("New", 0),
            2: ("Partially Shipped", 0),
            4: ("Billed", 0),
            5: ("Booked (applies to services)", 0),
            6: ("Installed (applies to services)", 0),
            3: ("Canceled (deprecated)", 1),
            7: ("Paid in Full (deprecated)", 1),
            100001: ("Complete", 2),
            100002: ("Partial", 2),
            100003: ("Canceled", 3),
        },
        collections=(Lines("invoice_details", "invoicedetails", "invoiceid"),),
    ),
    Table(
        "invoicedetails",
        "invoicedetail",
        "invoicedetailname",
        columns="invoicedetailid:G invoicedetailname:S productnumber:S! productdescription:S productname:S isproductoverridden:B ispriceoverridden:B quantity:N priceperunit:M baseamount:M manualdiscountamount:M volumediscountamount:M! tax:M extendedamount:M lineitemnumber:I sequencenumber:I description:S quantityshipped:N quantitybackordered:N quantitycancelled:N actualdeliveryon:T createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("invoiceid", ("invoice",), ("invoiceid",)),
            ("productid", ("product",), ("productid",)),
            ("uomid", ("uom",), ("uomid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("salesorderdetailid", ("salesorderdetail",), ("salesorderdetailid",)),
        ),
        states={},
        statuses={},
    ),
    Table(
        "accounts",
        "account",
        "name",
        columns="accountid:G name:S accountnumber:S emailaddress1:S telephone1:S websiteurl:S address1_line1:S address1_line2:S address1_city:S address1_stateorprovince:S address1_postalcode:S address1_country:S address1_composite:S! paymenttermscode:I creditlimit:M statecode:I statuscode:I createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("primarycontactid", ("contact",), ("primarycontactid",)),
            ("parentaccountid", ("account",), ("parentaccountid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("defaultpricelevelid", ("pricelevel",), ("defaultpricelevelid",)),
            ("ownerid", ("systemuser", "team"), ("ownerid",)),
        ),
        states={0: "Active", 1: "Inactive"},
        statuses={1: ("Active", 0), 2: ("Inactive", 1)},
        collections=(
            Lines("contact_customer_accounts", "contacts", "parentcustomerid"),
            Lines("opportunity_customer_accounts", "opportunities", "customerid"),
            Lines("quote_customer_accounts", "quotes", "customerid"),
            Lines("order_customer_accounts", "salesorders", "customerid"),
            Lines("invoice_customer_accounts", "invoices", "customerid"),
            Lines("account_parent_account", "accounts", "parentaccountid"),
        ),
    ),
    Table(
        "contacts",
        "contact",
        "fullname",
        columns="contactid:G fullname:S! firstname:S lastname:S emailaddress1:S telephone1:S mobilephone:S jobtitle:S address1_line1:S address1_line2:S address1_city:S address1_stateorprovince:S address1_postalcode:S address1_country:S statecode:I statuscode:I createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("parentcustomerid", ("account", "contact"), ("parentcustomerid_account", "parentcustomerid_contact")),
            ("accountid", ("account",), ()),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
            ("ownerid", ("systemuser", "team"), ("ownerid",)),
        ),
        states={0: "Active", 1: "Inactive"},
        statuses={1: ("Active", 0), 2: ("Inactive", 1)},
    ),
    Table(
        "products",
        "product",
        "name",
        columns="productid:G name:S productnumber:S description:S productstructure:I producttypecode:I price:M standardcost:M currentcost:M quantitydecimal:I quantityonhand:N isstockitem:B statecode:I statuscode:I createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("defaultuomid", ("uom",), ("defaultuomid",)),
            ("defaultuomscheduleid", ("uomschedule",), ("defaultuomscheduleid",)),
            ("pricelevelid", ("pricelevel",), ("pricelevelid",)),
            ("parentproductid", ("product",), ("parentproductid",)),
            ("transactioncurrencyid", ("transactioncurrency",), ("transactioncurrencyid",)),
        ),
        states={0: "Active", 1: "Retired", 2: "Draft", 3: "Under Revision"},
        statuses={0: ("Draft", 2), 1: ("Active", 0), 2: ("Retired", 1), 3: ("Under Revision", 3)},
    ),
)

# -- webhook registration (serviceendpoint, sdkmessageprocessingstep and its catalogue) -----------------

SDK_TABLES = (
    Table(
        "serviceendpoints",
        "serviceendpoint",
        "name",
        columns="serviceendpointid:G name:S description:S url:S contract:I authtype:I authvalue:S connectionmode:I "
        "messageformat:I userclaim:I namespaceaddress:S path:S solutionnamespace:S isauthvalueset:B! "
        "createdon:T! modifiedon:T! versionnumber:L!",
    ),
    Table(
        "sdkmessageprocessingsteps",
        "sdkmessageprocessingstep",
        "name",
        columns="sdkmessageprocessingstepid:G name:S description:S mode:I rank:I stage:I supporteddeployment:I "
        "asyncautodelete:B filteringattributes:S configuration:S statecode:I statuscode:I "
        "createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(
            ("sdkmessageid", ("sdkmessage",), ("sdkmessageid",)),
            ("sdkmessagefilterid", ("sdkmessagefilter",), ("sdkmessagefilterid",)),
            (
                "eventhandler",
                ("serviceendpoint", "plugintype"),
                ("eventhandler_serviceendpoint", "eventhandler_plugintype"),
            ),
        ),
        states={0: "Enabled", 1: "Disabled"},
        statuses={1: ("Enabled", 0), 2: ("Disabled", 1)},
    ),
    Table(
        "sdkmessageprocessingstepimages",
        "sdkmessageprocessingstepimage",
        "name",
        columns="sdkmessageprocessingstepimageid:G name:S entityalias:S imagetype:I attributes:S "
        "messagepropertyname:S createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(("sdkmessageprocessingstepid", ("sdkmessageprocessingstep",), ("sdkmessageprocessingstepid",)),),
    ),
    Table(
        "sdkmessages",
        "sdkmessage",
        "name",
        columns="sdkmessageid:G name:S createdon:T! modifiedon:T! versionnumber:L!",
        read_only=True,
    ),
    Table(
        "sdkmessagefilters",
        "sdkmessagefilter",
        "primaryobjecttypecode",
        columns="sdkmessagefilterid:G primaryobjecttypecode:S secondaryobjecttypecode:S "
        "createdon:T! modifiedon:T! versionnumber:L!",
        lookups=(("sdkmessageid", ("sdkmessage",), ("sdkmessageid",)),),
        read_only=True,
    ),
)

# -- the organization's settings: its currencies ----------------------------------------------------------

# transactioncurrency (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/transactioncurrency):
# the base currency and the others a record may be in. A System Administrator adds currencies in
# Settings; here they are seeded and a test adds one through the admin API, so the Web API only reads them.
ORGANIZATION_TABLES = (
    Table(
        "transactioncurrencies",
        "transactioncurrency",
        "currencyname",
        columns="transactioncurrencyid:G isocurrencycode:S currencyname:S currencysymbol:S currencyprecision:I "
        "exchangerate:N statecode:I statuscode:I createdon:T! modifiedon:T! versionnumber:L!",
        states={0: "Active", 1: "Inactive"},
        statuses={1: ("Active", 0), 2: ("Inactive", 1)},
        read_only=True,
    ),
)

TABLES: dict[str, Table] = {t.entity_set: t for t in (*SALES_TABLES, *SDK_TABLES, *ORGANIZATION_TABLES)}
BY_LOGICAL: dict[str, Table] = {t.logical: t for t in TABLES.values()}
HEADERS = {"quotes": "quote_details", "salesorders": "order_details", "invoices": "invoice_details"}
