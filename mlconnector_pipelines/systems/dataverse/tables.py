"""The Sales tables the warehouse holds as current state (`sales_<table>`), with the columns read.

Columns and types from Microsoft's table reference (`../shared/specs/dataverse-sales.entities.json`), as
`name:T` with T one of S (text), G (id), I/L (integer), B (yes/no), T (moment, UTC), D (date), N (exact
decimal: money and quantities). A lookup is read as `_<name>_value` and lands as column `<name>` (its id).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ...warehouse.schema import ColumnType

_TYPES = {
    "S": ColumnType.STRING,
    "G": ColumnType.STRING,
    "I": ColumnType.INTEGER,
    "L": ColumnType.INTEGER,
    "B": ColumnType.BOOLEAN,
    "T": ColumnType.TIMESTAMP,
    "D": ColumnType.DATE,
    "N": ColumnType.DECIMAL,
}


@dataclass(frozen=True)
class Table:
    entity_set: str
    key: str
    spec: str  # "name:T name:T …"; a lookup's name is its attribute (read as _<name>_value)
    lookups: frozenset[str]

    @property
    def warehouse_name(self) -> str:
        return f"sales_{self.entity_set}"

    @cached_property
    def columns(self) -> dict[str, ColumnType]:
        """Warehouse column → its type."""
        return {c.split(":")[0]: _TYPES[c.split(":")[1]] for c in self.spec.split()}

    def web_api_name(self, column: str) -> str:
        return f"_{column}_value" if column in self.lookups else column

    @property
    def select(self) -> list[str]:
        return [self.web_api_name(c) for c in self.columns]


def _table(entity_set: str, key: str, spec: str) -> Table:
    lookups = frozenset(c.split(":")[0] for c in spec.split() if c.endswith(":G") and c.split(":")[0] != key)
    return Table(entity_set, key, spec, lookups)


TABLES = {
    t.entity_set: t
    for t in (
        _table(
            "opportunities",
            "opportunityid",
            "opportunityid:G name:S customerid:G parentaccountid:G parentcontactid:G statecode:I statuscode:I "
            "estimatedvalue:N estimatedclosedate:D actualvalue:N actualclosedate:D isrevenuesystemcalculated:B "
            "closeprobability:I totalamount:N totallineitemamount:N totaldiscountamount:N totaltax:N "
            "discountamount:N discountpercentage:N pricelevelid:G transactioncurrencyid:G exchangerate:N "
            "description:S accountid:G contactid:G ownerid:G createdon:T modifiedon:T versionnumber:L",
        ),
        _table(
            "quotes",
            "quoteid",
            "quoteid:G name:S quotenumber:S revisionnumber:I customerid:G opportunityid:G statecode:I "
            "statuscode:I totalamount:N totallineitemamount:N totaldiscountamount:N totalamountlessfreight:N "
            "totaltax:N discountamount:N freightamount:N pricelevelid:G transactioncurrencyid:G effectivefrom:T "
            "effectiveto:T closedon:D paymenttermscode:I shippingmethodcode:I billto_line1:S billto_line2:S "
            "billto_city:S billto_stateorprovince:S billto_postalcode:S billto_country:S shipto_line1:S "
            "shipto_line2:S shipto_city:S shipto_stateorprovince:S shipto_postalcode:S shipto_country:S "
            "emailaddress:S ownerid:G createdon:T modifiedon:T versionnumber:L",
        ),
        _table(
            "quotedetails",
            "quotedetailid",
            "quotedetailid:G quotedetailname:S quoteid:G productid:G productnumber:S productdescription:S "
            "productname:S isproductoverridden:B ispriceoverridden:B quantity:N priceperunit:N uomid:G "
            "baseamount:N manualdiscountamount:N volumediscountamount:N tax:N extendedamount:N lineitemnumber:I "
            "sequencenumber:I transactioncurrencyid:G description:S requestdeliveryby:T createdon:T modifiedon:T "
            "versionnumber:L",
        ),
        _table(
            "salesorders",
            "salesorderid",
            "salesorderid:G name:S ordernumber:S customerid:G quoteid:G opportunityid:G statecode:I statuscode:I "
            "totalamount:N totallineitemamount:N totaldiscountamount:N totalamountlessfreight:N totaltax:N "
            "discountamount:N freightamount:N pricelevelid:G transactioncurrencyid:G ispricelocked:B submitdate:T "
            "datefulfilled:T requestdeliveryby:T paymenttermscode:I shippingmethodcode:I billto_line1:S "
            "billto_line2:S billto_city:S billto_stateorprovince:S billto_postalcode:S billto_country:S "
            "shipto_line1:S shipto_line2:S shipto_city:S shipto_stateorprovince:S shipto_postalcode:S "
            "shipto_country:S emailaddress:S ownerid:G createdon:T modifiedon:T versionnumber:L",
        ),
        _table(
            "salesorderdetails",
            "salesorderdetailid",
            "salesorderdetailid:G salesorderdetailname:S salesorderid:G productid:G productnumber:S "
            "productdescription:S productname:S isproductoverridden:B ispriceoverridden:B quantity:N "
            "priceperunit:N uomid:G baseamount:N manualdiscountamount:N volumediscountamount:N tax:N "
            "extendedamount:N lineitemnumber:I sequencenumber:I transactioncurrencyid:G description:S "
            "quantityshipped:N quantitybackordered:N quantitycancelled:N quotedetailid:G salesrepid:G "
            "requestdeliveryby:T createdon:T modifiedon:T versionnumber:L",
        ),
        _table(
            "invoices",
            "invoiceid",
            "invoiceid:G name:S invoicenumber:S customerid:G salesorderid:G opportunityid:G statecode:I "
            "statuscode:I totalamount:N totallineitemamount:N totaldiscountamount:N totalamountlessfreight:N "
            "totaltax:N discountamount:N freightamount:N pricelevelid:G transactioncurrencyid:G duedate:D "
            "datedelivered:D ispricelocked:B lastbackofficesubmit:T paymenttermscode:I shippingmethodcode:I "
            "billto_line1:S billto_line2:S billto_city:S billto_stateorprovince:S billto_postalcode:S "
            "billto_country:S shipto_line1:S shipto_line2:S shipto_city:S shipto_stateorprovince:S "
            "shipto_postalcode:S shipto_country:S emailaddress:S ownerid:G createdon:T modifiedon:T "
            "versionnumber:L",
        ),
        _table(
            "invoicedetails",
            "invoicedetailid",
            "invoicedetailid:G invoicedetailname:S invoiceid:G productid:G productnumber:S productdescription:S "
            "productname:S isproductoverridden:B ispriceoverridden:B quantity:N priceperunit:N uomid:G "
            "baseamount:N manualdiscountamount:N volumediscountamount:N tax:N extendedamount:N lineitemnumber:I "
            "sequencenumber:I transactioncurrencyid:G description:S quantityshipped:N quantitybackordered:N "
            "quantitycancelled:N salesorderdetailid:G actualdeliveryon:T createdon:T modifiedon:T versionnumber:L",
        ),
        _table(
            "accounts",
            "accountid",
            "accountid:G name:S accountnumber:S emailaddress1:S telephone1:S websiteurl:S address1_line1:S "
            "address1_line2:S address1_city:S address1_stateorprovince:S address1_postalcode:S address1_country:S "
            "address1_composite:S primarycontactid:G parentaccountid:G transactioncurrencyid:G "
            "defaultpricelevelid:G paymenttermscode:I creditlimit:N statecode:I statuscode:I ownerid:G "
            "createdon:T modifiedon:T versionnumber:L",
        ),
        _table(
            "contacts",
            "contactid",
            "contactid:G fullname:S firstname:S lastname:S emailaddress1:S telephone1:S mobilephone:S jobtitle:S "
            "parentcustomerid:G accountid:G address1_line1:S address1_line2:S address1_city:S "
            "address1_stateorprovince:S address1_postalcode:S address1_country:S transactioncurrencyid:G "
            "statecode:I statuscode:I ownerid:G createdon:T modifiedon:T versionnumber:L",
        ),
        _table(
            "products",
            "productid",
            "productid:G name:S productnumber:S description:S productstructure:I producttypecode:I defaultuomid:G "
            "defaultuomscheduleid:G pricelevelid:G price:N standardcost:N currentcost:N quantitydecimal:I "
            "quantityonhand:N isstockitem:B parentproductid:G transactioncurrencyid:G statecode:I statuscode:I "
            "createdon:T modifiedon:T versionnumber:L",
        ),
    )
}
